"""Classification evaluation of a frozen backbone: linear probe (MoCo protocol) and weighted kNN."""
from transfer.classification.knn import knn_accuracy, knn_predict
from transfer.classification.linear import train_linear

__all__ = ["knn_accuracy", "knn_predict", "train_linear"]
