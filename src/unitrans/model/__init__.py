"""Encoder loading, the token-classification tagger and constrained Viterbi decoding."""
