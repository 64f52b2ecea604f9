"""Static word embeddings, cross-lingual alignment (Procrustes, CSLS) and word-by-word translation."""
