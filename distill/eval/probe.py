"""Linear probing: how good are a model's features, whatever its classifier says."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from distill.data.stream import normalize
from distill.models.hooks import FeatureTaps, penultimate_path
from distill.modes import eval_mode


@torch.no_grad()
def penultimate_features(model: nn.Module, images: Tensor, mean: list[float], std: list[float], batch_size: int = 512) -> np.ndarray:
    path = penultimate_path(model)
    out = []
    with eval_mode(model), FeatureTaps(model, [path]) as taps:
        for i in range(0, len(images), batch_size):
            model(normalize(images[i:i + batch_size], mean, std))
            out.append(taps[path].flatten(1).float())
    return torch.cat(out).numpy()


def linear_probe_accuracy(model: nn.Module, train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor,
                          mean: list[float], std: list[float], max_train: int = 5000) -> float:
    """Test accuracy of a multinomial logistic regression fitted on standardised penultimate features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    train_x, train_y = train_x[:max_train], train_y[:max_train]
    scaler = StandardScaler()
    features = scaler.fit_transform(penultimate_features(model, train_x, mean, std))
    clf = LogisticRegression(max_iter=1000)
    clf.fit(features, train_y.numpy())
    test = scaler.transform(penultimate_features(model, test_x, mean, std))
    return float((clf.predict(test) == test_y.numpy()).mean())
