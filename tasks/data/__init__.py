"""Dataset readers and splits for the task definitions; pure Python, no model code."""

from tasks.data.reactions import ReactionRecord, read_reaction_file, read_uspto50k
from tasks.data.scaffold_split import ScaffoldSplit, murcko_scaffold, scaffold_split

__all__ = [
    "ReactionRecord",
    "ScaffoldSplit",
    "murcko_scaffold",
    "read_reaction_file",
    "read_uspto50k",
    "scaffold_split",
]
