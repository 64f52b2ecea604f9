"""Supervised training and knowledge distillation."""
