"""Fine-tuning: trainers, adapters and weight-space merging."""
