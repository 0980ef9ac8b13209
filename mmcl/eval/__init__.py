"""Evaluation: STS, SentEval transfer, retrieval, geometry (one evaluator per file), reports and export."""
