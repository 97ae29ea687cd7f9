"""The offline Reader's built-in concept vocabulary: which design ideas a sentence of a paper talks
about, as knowledge tags, and which sentences of a text read as architecture ideas.

Keyword patterns, not understanding: this is the baseline Reader's way to pick candidate sentences
from paper text, deterministically. Paper text is data: a sentence is kept only for naming a known
design concept and reading like a design statement, and sentences addressed to an agent ("ignore
your instructions ...") are dropped whatever they mention.
"""
from __future__ import annotations

import difflib
import re

from pydantic import BaseModel, ConfigDict, Field

from agents.papers import split_sentences

__all__ = ["CONCEPTS", "MAX_IDEA_CHARS", "Idea", "addresses_agent", "find_ideas", "tags_of"]

MAX_IDEA_CHARS = 600

# Tag -> keyword patterns (case-insensitive; `(?-i:...)` marks acronyms that must be upper case).
# The tags are those of `tools.memory.records.DESIGN_TAGS`, in the order ideas list them.
CONCEPTS: dict[str, tuple[str, ...]] = {
    "channel-attention": (
        r"squeeze[- ]?(?:and|&)[- ]?excitation", r"(?-i:\bSE)[- ]?(?:block|module|layer|net|unit)",
        r"channel[- ]?(?:wise )?attention", r"(?-i:\bECA\b)", r"channel[- ]?wise (?:feature )?(?:re)?weight",
        r"recalibrat\w* (?:the )?channel", r"channel[- ]?wise (?:feature )?(?:responses|recalibration|gating)",
        r"\bexcitation\b",
    ),
    "spatial-attention": (r"spatial attention", r"(?-i:\bCBAM\b)", r"spatial (?:attention )?(?:gate|gating|attention map)"),
    "residual": (r"residual", r"skip[- ]connection", r"\bshortcut", r"identity (?:mapping|connection|path)"),
    "dense": (r"dense(?:ly)?[- ]connect", r"dense (?:block|connectivity)", r"(?-i:DenseNet)", r"growth rate",
              r"feature reuse"),
    "bottleneck": (r"bottleneck", r"channel reduction", r"reduc\w* the (?:number of )?channels"),
    "inverted-residual": (r"inverted[- ]residual", r"(?-i:MBConv)", r"expansion (?:ratio|factor|layer)",
                          r"linear bottleneck", r"expand\w* (?:the )?(?:number of )?channels"),
    "depthwise-separable": (r"depth[- ]?wise", r"separable conv", r"point[- ]?wise conv", r"(?-i:MobileNet)",
                            r"(?-i:Xception)"),
    "dilated": (r"dilat(?:ed|ion)", r"atrous"),
    "multi-branch": (r"multi[- ]?branch", r"(?-i:Inception)", r"parallel (?:branch|path|conv)", r"\bbranches\b",
                     r"split[- ]transform[- ]merge", r"multi[- ]?scale",
                     r"(?:two|three|four|several|multiple) (?:parallel )?(?:branches|paths)"),
    "kernel-size": (r"kernel sizes?", r"large[r]?[- ]kernels?", r"receptive field",
                    r"\b(5|7|9|11|13|31) ?[x\u00d7] ?\1\b"),
    "activation": (r"(?-i:\bGELU\b)", r"\bswish\b", r"\bmish\b", r"(?-i:\bSiLU\b)", r"(?-i:\bReLU6\b)",
                   r"(?-i:\bPReLU\b)", r"leaky[- ]?relu", r"(?-i:\bELU\b)", r"activation functions?",
                   r"non-?linearit(?:y|ies)"),
    "normalization": (r"batch[- ]?norm", r"(?-i:\bBN\b)", r"layer[- ]?norm", r"group[- ]?norm", r"instance[- ]?norm",
                      r"normali[sz]ation", r"weight standardi[sz]ation"),
    "grouped-conv": (r"group(?:ed)? conv", r"cardinality", r"(?-i:ResNeXt)", r"channel shuffle", r"(?-i:ShuffleNet)",
                     r"number of groups"),
    "pooling-branch": (r"pool\w*[- ](?:branch|path|projection)", r"pyramid pooling", r"(?-i:\bA?SPP\b)",
                       r"parallel \w+(?: \w+)? pool"),
    "stochastic-depth": (r"stochastic depth", r"drop[- ]?path", r"drop[- ]?connect",
                         r"randomly (?:drop|skip)\w* (?:\w+ )?(?:blocks|layers|branches|residual)"),
    "self-attention": (r"self[- ]attention", r"multi[- ]head(?:ed)? attention", r"non[- ]local", r"transformer",
                       r"quer(?:y|ies),? keys?"),
    "pre-activation": (r"pre[- ]?activation", r"(?:BN|batch norm\w*) (?:and|->|\u2192) ReLU before"),
    "width": (r"\bwide(?:r)? (?:residual )?network", r"(?-i:\bWRN\b)", r"\bwiden", r"width (?:multiplier|factor)",
              r"\bwider\b", r"(?:increase|double)\w* the (?:number of )?channels", r"\bwidth\b"),
}
_CONCEPT_RES: dict[str, re.Pattern[str]] = {
    tag: re.compile("|".join(f"(?:{p})" for p in pats), re.I) for tag, pats in CONCEPTS.items()
}

# Words that make a sentence a design statement rather than a result or background.
_DESIGN_VERBS = re.compile(r"\b(?:" + "|".join((
    r"propos(?:e|es|ed|ing)", r"introduc(?:e|es|ed|ing)", r"present(?:s|ed|ing)?", r"replac(?:e|es|ed|ing)",
    r"add(?:s|ed|ing)?", r"insert(?:s|ed|ing)?", r"us(?:e|es|ed|ing)", r"employ(?:s|ed|ing)?",
    r"adopt(?:s|ed|ing)?", r"appl(?:y|ies|ied|ying)", r"append(?:s|ed|ing)?", r"stack(?:s|ed|ing)?",
    r"design(?:s|ed|ing)?", r"incorporat(?:e|es|ed|ing)", r"integrat(?:e|es|ed|ing)", r"plug(?:s|ged|ging)?",
    r"reorder(?:s|ed|ing)?", r"swap(?:s|ped|ping)?", r"substitut(?:e|es|ed|ing)", r"enlarg(?:e|es|ed|ing)",
    r"expand(?:s|ed|ing)?", r"widen(?:s|ed|ing)?", r"reduc(?:e|es|ed|ing)", r"split(?:s|ting)?",
    r"concatenat(?:e|es|ed|ing)", r"recalibrat(?:e|es|ed|ing)", r"aggregat(?:e|es|ed|ing)", r"fus(?:e|es|ed|ing)",
    r"factori[sz](?:e|es|ed|ing)", r"decompos(?:e|es|ed|ing)", r"wrap(?:s|ped|ping)?", r"attach(?:es|ed|ing)?",
    r"plac(?:e|es|ed|ing)", r"combin(?:e|es|ed|ing)", r"augment(?:s|ed|ing)?", r"modif(?:y|ies|ied|ying)",
    r"build(?:s|ing)?", r"built", r"follow(?:s|ed)", r"squeez(?:e|es|ed|ing)", r"excit(?:e|es|ed|ing)",
    r"drop(?:s|ped|ping)?", r"gat(?:e|es|ed|ing)",
)) + r")\b", re.I)
# The verbs of a design action: they keep a sentence that also quotes a result ("we insert ... and
# gain 1%"); verbs like "reduce" or "improve" describe results too often to do that.
_ACTION_VERBS = re.compile(r"\b(?:" + "|".join((
    r"propos(?:e|es|ed|ing)", r"introduc(?:e|es|ed|ing)", r"replac(?:e|es|ed|ing)", r"insert(?:s|ed|ing)?",
    r"add(?:s|ed|ing)?", r"append(?:s|ed|ing)?", r"us(?:e|es|ed|ing)", r"employ(?:s|ed|ing)?",
    r"adopt(?:s|ed|ing)?", r"plac(?:e|es|ed|ing)", r"wrap(?:s|ped|ping)?", r"substitut(?:e|es|ed|ing)",
    r"incorporat(?:e|es|ed|ing)", r"integrat(?:e|es|ed|ing)", r"stack(?:s|ed|ing)?", r"design(?:s|ed|ing)?",
)) + r")\b", re.I)
_DESIGN_NOUNS = re.compile(
    r"\b(?:blocks?|layers?|modules?|units?|branch(?:es)?|channels?|kernels?|connections?|convolutions?|convs?|"
    r"filters?|shortcuts?|paths?|architectures?|cells?|operators?|operations?|stages?|feature maps?|"
    r"bottlenecks?|attention|activations?|normali[sz]ation)\b", re.I)
_RESULT_WORDS = re.compile(
    r"\b(?:accuracy|accuracies|error|errors|top-?[15]|mAP|AP|mIoU|FLOPs|GFLOPs|MACs|params|parameters|"
    r"outperform\w*|achiev\w*|improv\w*|gain\w*|reach\w*|surpass\w*|table|tab\.|fig\.|figure|results?|"
    r"score\w*|baseline)\b", re.I)
_NUMBER_TOKEN = re.compile(r"^[(\[]?[-+]?\d[\d.,]*[%x\u00d7]?[)\],;:.]*$")
# Citation markers: [12], [3, 4-6], (He et al., 2016), He et al. [3], (2016), "et al.".
_CITATION = re.compile(
    r"\[\s*\d+(?:\s*[,\u2013-]\s*\d+)*\s*\]"
    r"|\((?:[A-Z][\w'\-]+(?: and [A-Z][\w'\-]+| et al\.?)?,? \d{4}[a-z]?(?:; ?)?)+\)"
    r"|\b[A-Z][\w'\-]+ et al\.? ?(?:\(\d{4}\)|\[\d+\])?"
    r"|\b[A-Z][\w'\-]+ and [A-Z][\w'\-]+ ?(?:\(\d{4}\)|\[\d+\])"
    r"|\(\d{4}\)"
)
_BIBLIOGRAPHY = re.compile(r"\b(?:In Proceedings|Proc\.|arXiv(?: preprint)?|pp\.|vol\.|CVPR|ICCV|ECCV|NeurIPS|"
                           r"NIPS|ICLR|ICML|AAAI|TPAMI|IEEE Trans)", re.I)
# Text addressed to the agent reading the paper, not about architectures: never an idea.
_INSTRUCTION = re.compile(
    r"\b(?:ignore|disregard|forget)\b.{0,40}\b(?:instructions?|prompts?|rules?|previous|above)\b"
    r"|\b(?:system prompt|assistant|language model|LLM|you are now|as an AI)\b"
    r"|\b(?:call|invoke|run)\b.{0,30}\b(?:tools?|functions?|launcher|command)\b",
    re.I,
)
_CONTINUES = re.compile(r"^(?:This|It|Its|These|Such|The (?:module|block|unit|layer|branch|gate|resulting))\b")
_MIN_WORDS = 6


class Idea(BaseModel):
    """A candidate architecture idea: one or a few consecutive sentences of a text, with its tags."""

    model_config = ConfigDict(frozen=True)

    text: str = Field(description=f"the sentence(s), at most {MAX_IDEA_CHARS} characters")
    tags: list[str]
    sentence: int = Field(description="index of the idea's first sentence in the text, from 0")


def addresses_agent(text: str) -> bool:
    """Whether `text` reads as an instruction to the agent reading it ("ignore your instructions",
    "call the launcher") rather than as content about architectures."""
    return bool(_INSTRUCTION.search(text))


def tags_of(sentence: str) -> list[str]:
    """Tags of the concepts `sentence` mentions, in `CONCEPTS` order."""
    return [tag for tag, rx in _CONCEPT_RES.items() if rx.search(sentence)]


def find_ideas(text: str) -> list[Idea]:
    """Sentences of `text` that name a known concept and read as an architecture idea, each merged
    with the sentences right after it that continue it (same concept, or "This/It/The module ...").
    Deterministic; near-duplicates with the same tags are dropped (the first is kept)."""
    sentences = split_sentences(text)
    tags = [tags_of(s) for s in sentences]
    ideas: list[Idea] = []
    i = 0
    while i < len(sentences):
        if not (tags[i] and _is_idea(sentences[i])):
            i += 1
            continue
        parts, idea_tags, j = [sentences[i]], list(tags[i]), i + 1
        while j < len(sentences) and _continues(sentences[j], tags[j], idea_tags):
            if len(" ".join(parts + [sentences[j]])) > MAX_IDEA_CHARS:
                break
            parts.append(sentences[j])
            idea_tags += [t for t in tags[j] if t not in idea_tags]
            j += 1
        ordered = [t for t in CONCEPTS if t in idea_tags]
        ideas.append(Idea(text=_clip(" ".join(parts)), tags=ordered, sentence=i))
        i = j
    return _dedupe(ideas)


def _words(sentence: str) -> list[str]:
    return re.findall(r"[A-Za-z][A-Za-z'\-]*", sentence)


def _is_idea(sentence: str) -> bool:
    if addresses_agent(sentence) or _is_citation_only(sentence) or _is_result(sentence):
        return False
    if len(_words(sentence)) < _MIN_WORDS:
        return False
    return bool(_DESIGN_VERBS.search(sentence) or _DESIGN_NOUNS.search(sentence))


def _is_citation_only(sentence: str) -> bool:
    """A reference to other work with too little of its own to say, or a bibliography entry."""
    if _BIBLIOGRAPHY.search(sentence) and re.search(r"\b(?:19|20)\d{2}\b", sentence):
        return True
    stripped, n = _CITATION.subn(" ", sentence)
    return n > 0 and len(_words(stripped)) < _MIN_WORDS


def _is_result(sentence: str) -> bool:
    """A numeric result ("reaches 77.6% top-1") or a table row, unless it also states a design
    action; a sentence that is mostly numbers is a table row whatever it says."""
    tokens = sentence.split()
    numbers = sum(1 for t in tokens if _NUMBER_TOKEN.match(t))
    if tokens and numbers / len(tokens) > 0.25:
        return True
    has_figure = re.search(r"\d+(?:\.\d+)?\s*%|\b\d+\.\d+\b", sentence)
    return bool(has_figure and _RESULT_WORDS.search(sentence) and not _ACTION_VERBS.search(sentence))


def _continues(sentence: str, tags: list[str], idea_tags: list[str]) -> bool:
    if addresses_agent(sentence) or _is_citation_only(sentence):
        return False
    return bool(set(tags) & set(idea_tags)) or bool(_CONTINUES.match(sentence))


def _clip(text: str) -> str:
    if len(text) <= MAX_IDEA_CHARS:
        return text
    cut = text[: MAX_IDEA_CHARS - 1].rsplit(" ", 1)[0]
    return cut + "\u2026"


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def _dedupe(ideas: list[Idea]) -> list[Idea]:
    kept: list[Idea] = []
    for idea in ideas:
        n = _norm(idea.text)
        if not any(k.tags == idea.tags and _similar(n, _norm(k.text)) for k in kept):
            kept.append(idea)
    return kept


def _similar(a: str, b: str) -> bool:
    return a == b or a in b or b in a or difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() >= 0.9
