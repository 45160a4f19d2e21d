"""iLRG (Ma et al., ICLR 2023, "Instance-wise Batch Label Restoration via Gradients in Federated Learning").

Only the last layer z = W h + b is used. With mean cross-entropy, dW_n = (1/B) sum_k (p_kn - y_kn) h_k and
db_n = (1/B) sum_k (p_kn - y_kn) (without the 1/B for a summed loss). Steps:

1. class embeddings e_n = dW_n / db_n (a zero db_n gives e_n = 0);
2. class probabilities P[n] = softmax(W e_n + b), the prediction for a sample of class n;
3. with k_j samples of class j: sum_j k_j P[j, i] - k_i = B db_i for every class i, and sum_j k_j = B;
   solved in the least-squares sense with the Moore-Penrose pseudo-inverse;
4. clip to [0, B], round, then fix the total to B one unit at a time: while too many, take one from the
   count rounded up the most; while too few, add one to the count rounded down the most.

Assumption: the linear system of step 3 is exact; the estimate of steps 1-2 is exact when all samples of a
class share one feature vector h_n and the other samples' probabilities of class n are negligible next to
1 - p_nn (an untrained model with many classes; the paper's main setting). Otherwise P carries an error
that the rounding absorbs while it stays small.
"""

from __future__ import annotations

import torch

from bench.case import Case
from bench.labels import LABELS


def class_probabilities(
    weight_grad: torch.Tensor, bias_grad: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """P[n] = softmax(W e_n + b) with e_n = dW_n / db_n (row n: a class-n sample's predicted distribution)."""
    safe = torch.where(bias_grad == 0, torch.ones_like(bias_grad), bias_grad)
    embeddings = torch.where((bias_grad == 0)[:, None], torch.zeros_like(weight_grad), weight_grad / safe[:, None])
    return torch.softmax(embeddings @ weight.T + bias, dim=1)


def solve_counts(probabilities: torch.Tensor, bias_grad: torch.Tensor, batch_size: int, scale: float) -> torch.Tensor:
    """Least-squares class counts of [1^T; P^T - I] k = [B; db / scale] (float, before rounding)."""
    num_classes = probabilities.shape[0]
    ones = torch.ones(1, num_classes, dtype=probabilities.dtype)
    system = torch.cat([ones, probabilities.T - torch.eye(num_classes, dtype=probabilities.dtype)])
    target = torch.cat([torch.tensor([float(batch_size)], dtype=probabilities.dtype), bias_grad / scale])
    return torch.linalg.pinv(system) @ target


def round_counts(counts: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Clip to [0, B], round, then move one unit at a time until the counts sum to B."""
    counts = counts.clamp(0, batch_size)
    rounded = counts.round()
    while rounded.sum() > batch_size:
        error = torch.where(rounded > 0, rounded - counts, torch.full_like(counts, -torch.inf))
        rounded[int(torch.argmax(error))] -= 1
    while rounded.sum() < batch_size:
        rounded[int(torch.argmin(rounded - counts))] += 1
    return rounded.long()


@LABELS.register(
    "ilrg",
    description="iLRG: class embeddings dW/db, softmax of the last layer, pseudo-inverse for the class counts",
    needs=("dW", "db", "B", "fc", "gradient"),
)
def recover(case: Case) -> torch.Tensor:
    weight_name, bias_name = case.classifier
    weight_grad, bias_grad = case.classifier_gradients()
    weight_grad, bias_grad = weight_grad.detach().double().cpu().flatten(1), bias_grad.detach().double().cpu()
    weight = case.model_state[weight_name].double().cpu().flatten(1)
    bias = case.model_state[bias_name].double().cpu()
    probabilities = class_probabilities(weight_grad, bias_grad, weight, bias)
    counts = round_counts(solve_counts(probabilities, bias_grad, case.num_images, case.sample_scale()), case.num_images)
    return torch.repeat_interleave(torch.arange(case.num_classes), counts)
