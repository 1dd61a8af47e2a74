"""Shop colour words -> one English vocabulary (the colour families a filter on zalando.de offers, plus navy).

A shop writes colours in its own language and spelling ("schwarz", "black", "dunkelblau", "hellgrau meliert",
"dark blue denim"); counted as they are, the same colour is split over several words and the long tail lands in
"other". `colour_family` maps a word to one of FAMILIES; the shop's own word is kept beside it in the snapshot
(`pieces.colour`), so nothing is lost and an unknown word is visible as such.

How a word is read (casefolded, umlauts and ß folded, split at anything that is not a letter):
1. the whole phrase in PHRASES ("dark blue", "dunkelblau", "off-white", "light-blue denim");
2. else the first word that names a colour (WORDS), ignoring modifiers such as dark/light/hell/dunkel/meliert/
   melange/washed/neon: "hellgrau meliert" -> grey, "black denim" -> black, "schwarz/weiß" -> black (a shop names
   the main colour first);
3. else a German compound ending in a colour word: "mittelgrau" -> grey, "tiefschwarz" -> black;
4. else "multicoloured" for the shop's words for many colours ("mehrfarbig", "bunt", "print"), else "other".
"""

from __future__ import annotations

import re
import unicodedata

OTHER = "other"
MULTI = "multicoloured"

# The vocabulary, in the order a legend lists it (dark to light, then warm to cold, then the rest).
FAMILIES: tuple[str, ...] = (
    "black", "grey", "white", "beige", "brown", "navy", "blue", "turquoise", "green", "yellow", "orange", "red",
    "pink", "purple", "gold", "silver", MULTI, OTHER,
)

# A CSS colour for each family's swatch (the report's bars and the dashboard's), readable on white.
SWATCHES: dict[str, str] = {
    "black": "#1c1c1e", "grey": "#9a9a98", "white": "#f2f0ea", "beige": "#d8c6a4", "brown": "#8a5a36",
    "navy": "#1f2c56", "blue": "#4a78b8", "turquoise": "#2aa8a8", "green": "#4f7a3a", "yellow": "#e8c83a",
    "orange": "#e8862a", "red": "#b82026", "pink": "#e8a0b6", "purple": "#8a62b0", "gold": "#c8a040",
    "silver": "#c0c4c8", MULTI: "#b0a0d0", OTHER: "#dddddd",
}

# Whole phrases (after folding, words joined by one space) whose meaning is more than their first colour word.
PHRASES: dict[str, str] = {
    "dark blue": "navy", "dunkelblau": "navy", "dunkel blau": "navy", "marine": "navy", "marineblau": "navy",
    "navy blue": "navy", "dark navy": "navy", "nachtblau": "navy", "dark blue denim": "navy", "midnight blue": "navy",
    "off white": "white", "offwhite": "white", "light blue": "blue", "hellblau": "blue",
    "light blue denim": "blue", "blue denim": "blue", "dark green": "green", "dunkelgrun": "green",
    "rose gold": "gold", "rosegold": "gold", "multi": MULTI, "multi colour": MULTI, "multi color": MULTI,
    "multicolour": MULTI, "multicolor": MULTI, "multicoloured": MULTI, "multicolored": MULTI,
}

# Single words -> family. German and English, Zalando's usual colour names.
WORDS: dict[str, str] = {
    # black
    "black": "black", "schwarz": "black", "noir": "black", "jet": "black", "onyx": "black",
    # grey
    "grey": "grey", "gray": "grey", "grau": "grey", "anthracite": "grey", "anthrazit": "grey", "charcoal": "grey",
    "graphite": "grey", "graphit": "grey", "asphalt": "grey", "slate": "grey", "steel": "grey", "ash": "grey",
    "stone": "grey", "stein": "grey", "stonewash": "blue", "stonewashed": "blue",
    # white
    "white": "white", "weiss": "white", "weis": "white", "ecru": "white", "cream": "white", "creme": "white",
    "ivory": "white", "elfenbein": "white", "offwhite": "white", "wollweiss": "white", "chalk": "white",
    # beige
    "beige": "beige", "sand": "beige", "nude": "beige", "taupe": "beige", "oat": "beige",
    "oatmeal": "beige", "natural": "beige", "natur": "beige", "champagne": "beige", "kitt": "beige", "tan": "beige",
    # brown
    "brown": "brown", "braun": "brown", "camel": "brown", "cognac": "brown", "chocolate": "brown", "mocca": "brown",
    "mokka": "brown", "coffee": "brown", "caramel": "brown", "karamell": "brown", "chestnut": "brown",
    "tobacco": "brown", "rust": "brown", "rost": "brown", "bronze": "brown", "copper": "brown", "kupfer": "brown",
    # navy
    "navy": "navy", "marine": "navy", "indigo": "navy",
    # blue
    "blue": "blue", "blau": "blue", "denim": "blue", "jeans": "blue", "azure": "blue", "royal": "blue",
    "royalblau": "blue", "cobalt": "blue", "kobalt": "blue", "sky": "blue", "himmelblau": "blue", "bleu": "blue",
    # turquoise
    "turquoise": "turquoise", "turkis": "turquoise", "petrol": "turquoise", "teal": "turquoise", "aqua": "turquoise",
    "cyan": "turquoise",
    # green
    "green": "green", "grun": "green", "olive": "green", "oliv": "green", "khaki": "green", "mint": "green",
    "sage": "green", "salbei": "green", "emerald": "green", "smaragd": "green", "lime": "green", "moss": "green",
    "forest": "green", "bottle": "green", "pistachio": "green", "army": "green",
    # yellow
    "yellow": "yellow", "gelb": "yellow", "mustard": "yellow", "senf": "yellow", "lemon": "yellow", "ochre": "yellow",
    "ocker": "yellow", "curry": "yellow", "vanilla": "yellow", "vanille": "yellow",
    # orange
    "orange": "orange", "apricot": "orange", "peach": "orange", "pfirsich": "orange", "coral": "orange",
    "koralle": "orange", "terracotta": "orange", "salmon": "orange", "lachs": "orange",
    # red
    "red": "red", "rot": "red", "bordeaux": "red", "burgundy": "red", "weinrot": "red", "wine": "red",
    "cherry": "red", "kirsche": "red", "scarlet": "red", "maroon": "red", "brick": "red", "berry": "red",
    # pink
    "pink": "pink", "rosa": "pink", "rose": "pink", "fuchsia": "pink", "magenta": "pink", "blush": "pink",
    "altrosa": "pink", "flamingo": "pink",
    # purple
    "purple": "purple", "lila": "purple", "violet": "purple", "violett": "purple", "lilac": "purple",
    "flieder": "purple", "lavender": "purple", "lavendel": "purple", "mauve": "purple", "plum": "purple",
    "pflaume": "purple", "aubergine": "purple", "beere": "purple",
    # metals
    "gold": "gold", "golden": "gold", "goldfarben": "gold", "silver": "silver", "silber": "silver",
    "silberfarben": "silver", "metallic": "silver",
    # many colours
    "multi": MULTI, "multicolour": MULTI, "multicolor": MULTI, "multicoloured": MULTI, "multicolored": MULTI,
    "mehrfarbig": MULTI, "bunt": MULTI, "print": MULTI, "floral": MULTI, "camouflage": MULTI, "camo": MULTI,
    "leopard": MULTI, "animal": MULTI, "gestreift": MULTI, "striped": MULTI, "kariert": MULTI, "checked": MULTI,
}

# Words that shade a colour without changing its family.
MODIFIERS = frozenset({
    "dark", "light", "pale", "deep", "bright", "mid", "medium", "soft", "washed", "faded", "neon", "pastel", "dusty",
    "hell", "dunkel", "mittel", "tief", "mel", "meliert", "melange", "heather", "mottled", "marl", "marled", "mix",
    "and", "und", "with", "mit", "used", "rinsed", "raw", "vintage", "blended", "solid", "uni", "matt", "glanzend",
})

# German compounds end in their colour word (dunkelgrau, tiefschwarz, knallrot): longest first, so "weinrot"
# is tried before "rot" and "dunkelblau"'s special meaning (PHRASES) wins over "blau".
_SUFFIXES = sorted((word for word in WORDS if len(word) >= 3), key=len, reverse=True)
_PREFIXES = ("dunkel", "hell", "mittel", "tief", "knall", "zart", "pastell", "neon", "dark", "light")


def fold(text: str) -> str:
    """Casefolded, ß -> ss, accents and umlauts removed, runs of non-letters -> one space."""
    text = unicodedata.normalize("NFKD", str(text).casefold().replace("ß", "ss"))
    text = "".join(char for char in text if not unicodedata.combining(char))
    return " ".join(re.findall(r"[a-z]+", text))


def _word_family(word: str) -> str | None:
    if word in WORDS:
        return WORDS[word]
    for prefix in _PREFIXES:  # hellgrau, dunkelgrun, darkgreen
        if word.startswith(prefix) and word[len(prefix):] in WORDS:
            rest = word[len(prefix):]
            return "navy" if prefix in ("dunkel", "dark") and WORDS[rest] == "blue" else WORDS[rest]
    for suffix in _SUFFIXES:  # tiefschwarz, knallrot
        if len(word) > len(suffix) and word.endswith(suffix):
            return WORDS[suffix]
    return None


def colour_family(word: str | None) -> str | None:
    """The family of a shop's colour word; None for no word (NULL or blank), OTHER for a word not understood."""
    if word is None:
        return None
    folded = fold(word)
    if not folded:
        return None if not str(word).strip() else OTHER
    if folded in PHRASES:
        return PHRASES[folded]
    words = folded.split()
    # "dark blue denim" / "dunkel blau": a phrase with its modifiers is a phrase too
    for length in range(len(words), 1, -1):
        for start in range(len(words) - length + 1):
            phrase = " ".join(words[start:start + length])
            if phrase in PHRASES:
                return PHRASES[phrase]
    for word_ in words:
        if word_ in MODIFIERS:
            continue
        family = _word_family(word_)
        if family is not None:
            return family
    return OTHER


def colour_families(words) -> list[str | None]:
    """colour_family for each word, each distinct word read once (a catalogue repeats a few dozen words)."""
    cache: dict = {}
    out = []
    for word in words:
        key = None if word is None or (isinstance(word, float) and word != word) else str(word)
        if key not in cache:
            cache[key] = colour_family(key)
        out.append(cache[key])
    return out
