"""Evaluation metrics as pure functions: retrieval, zero-shot classification, VQA and multiple choice,
grounding, reactions, captioning, text -> molecule generation, molecular properties, and per-group breakdowns."""

from tasks.metrics.bleu import corpus_bleu
from tasks.metrics.breakdown import group_means
from tasks.metrics.captioning import (
    CaptionScores,
    TokenizerNotFoundError,
    caption_bleu,
    caption_metrics,
    load_scibert_tokenizer,
    meteor_exact,
    rouge_f_no_stemming,
    scibert_tokenize,
    word_tokenize,
)
from tasks.metrics.classification import accuracy_at_k, ensemble_class_embeddings, mean_per_class_recall
from tasks.metrics.edit_distance import levenshtein_distance
from tasks.metrics.grounding import (
    accuracy_at_iou,
    box_iou,
    convert_boxes,
    decode_box_tokens,
    encode_box_tokens,
    paired_iou,
)
from tasks.metrics.molecule_generation import (
    molecule_exact_matches,
    molecule_generation_metrics,
    smiles_char_bleu4,
)
from tasks.metrics.multiple_choice import MultipleChoiceResult, choose_options, multiple_choice_accuracy
from tasks.metrics.property import (
    MultiTaskRocAuc,
    average_precision,
    mae,
    multitask_roc_auc,
    property_metrics,
    r_squared,
    rmse,
    roc_auc,
)
from tasks.metrics.reaction import (
    TopKExactMatch,
    distinct_molecules,
    top1_validity,
    topk_exact_match_stereo_agnostic,
    topk_exact_match_stereo_aware,
)
from tasks.metrics.retrieval import (
    bidirectional_retrieval_metrics,
    invert_positives,
    positive_ranks,
    retrieval_metrics,
    streaming_topk,
)
from tasks.metrics.smiles import canonicalize_smiles, parse_smiles, tanimoto_similarity
from tasks.metrics.topk import ranks_lower_index_wins, topk_lower_index_wins
from tasks.metrics.vqa import VQAResult, process_digit_article, process_punctuation, vqa_accuracy, vqa_scores

__all__ = [
    "MultiTaskRocAuc",
    "MultipleChoiceResult",
    "TopKExactMatch",
    "VQAResult",
    "accuracy_at_iou",
    "accuracy_at_k",
    "average_precision",
    "bidirectional_retrieval_metrics",
    "box_iou",
    "canonicalize_smiles",
    "CaptionScores",
    "caption_bleu",
    "caption_metrics",
    "choose_options",
    "convert_boxes",
    "corpus_bleu",
    "decode_box_tokens",
    "distinct_molecules",
    "encode_box_tokens",
    "ensemble_class_embeddings",
    "group_means",
    "invert_positives",
    "levenshtein_distance",
    "load_scibert_tokenizer",
    "mae",
    "mean_per_class_recall",
    "meteor_exact",
    "molecule_exact_matches",
    "molecule_generation_metrics",
    "multiple_choice_accuracy",
    "multitask_roc_auc",
    "paired_iou",
    "parse_smiles",
    "positive_ranks",
    "process_digit_article",
    "process_punctuation",
    "property_metrics",
    "ranks_lower_index_wins",
    "retrieval_metrics",
    "r_squared",
    "rmse",
    "roc_auc",
    "rouge_f_no_stemming",
    "scibert_tokenize",
    "smiles_char_bleu4",
    "streaming_topk",
    "tanimoto_similarity",
    "top1_validity",
    "topk_exact_match_stereo_agnostic",
    "topk_exact_match_stereo_aware",
    "TokenizerNotFoundError",
    "topk_lower_index_wins",
    "vqa_accuracy",
    "vqa_scores",
    "word_tokenize",
]
