"""sampled_softmax_loss (being written; see issue 5)."""
__all__ = ["sampled_softmax_loss", "SampledSoftmaxGrad"]
sampled_softmax_loss = SampledSoftmaxGrad = None
