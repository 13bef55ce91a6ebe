"""Distillation methods, one file each; each registers itself in `METHODS` (discovered on use)."""
from distill.methods.base import METHODS, Method, MethodConfig, build_method, method_names
from distill.methods.context import ClassificationContext, EmbeddingContext, LMContext, TaskContext

__all__ = ["METHODS", "ClassificationContext", "EmbeddingContext", "LMContext", "Method", "MethodConfig", "TaskContext",
           "build_method", "method_names"]
