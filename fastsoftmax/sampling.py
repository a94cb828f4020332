"""Candidate samplers (being written; see issue 5)."""
__all__ = ["AliasSampler", "UnigramSampler", "LogUniformSampler", "UniformSampler", "Candidates"]
AliasSampler = UnigramSampler = LogUniformSampler = UniformSampler = Candidates = None
