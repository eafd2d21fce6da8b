"""Classification transfer of a backbone: linear probe (MoCo) and weighted kNN, VOC07 (low-shot) SVMs
(Goyal et al.), many-shot logistic regression (Ericsson et al.), semi-supervised full fine-tuning (SimCLR subsets)."""
from transfer.classification.knn import knn_accuracy, knn_predict
from transfer.classification.linear import train_linear

__all__ = ["knn_accuracy", "knn_predict", "train_linear"]
