"""Key maps from other libraries' whole-model checkpoints onto zoo models (cards name them as ``key_map``)."""
