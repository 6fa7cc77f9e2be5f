"""Synthetic e-commerce event log with realistic skew, for scale tests.

Pure numpy + pyarrow (no Spark) so that the data for a Spark scale test can be made
quickly on a laptop. Events are generated in chunks of about a million rows and
written while the next chunk is generated, so memory stays flat however many events
are asked for.

The output follows the generic event-log contract (``shoprec.ingest.event_log``):

    out_dir/events/part-00000.<ext>, part-00001.<ext>, ...   (parquet, csv.gz, jsonl.gz)
    out_dir/catalog.csv                                      (item_id, title, description, category, price)

Event columns: user_id, item_id, event_type, event_time, session_id, device, country,
price, quantity. The same seed and arguments give byte-identical data content.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import BinaryIO, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

FORMATS = {"parquet": "parquet", "csv": "csv.gz", "jsonl": "jsonl.gz"}
EVENT_COLUMNS = (
    "user_id",
    "item_id",
    "event_type",
    "event_time",
    "session_id",
    "device",
    "country",
    "price",
    "quantity",
)
CATALOG_COLUMNS = ("item_id", "title", "description", "category", "price")
EVENT_TYPES = ("view", "cart", "purchase")
DEVICES = ("desktop", "mobile", "tablet", "app")

# About a million events per chunk keeps peak memory in the hundreds of MB while the
# per-chunk overhead (numpy calls, row groups) stays negligible.
CHUNK_EVENTS = 1_000_000

_VIEW, _CART, _PURCHASE, _CLICKED = 0, 1, 2, 3
_TYPE_NAMES = (*EVENT_TYPES, "clicked")

# Mean session length 5 (geometric); capped so that no session can last a whole day,
# which lets every session fit inside the requested date range without clipping times
# (clipping could make two events of a session identical).
_SESSION_P = 0.2
_MAX_SESSION_EVENTS = 90
_MAX_GAP_SECONDS = 900
_MEDIAN_GAP_SECONDS = 25.0

# Funnel probabilities for events after the first of a session (the first is always a
# view); with mean length 5, 80% of events are "later", giving ~10% carts, ~3% purchases.
_P_CART = 0.125
_P_PURCHASE = 0.0375
_P_CART_OF_LAST_VIEW = 0.85
_P_PURCHASE_OF_SEEN = 0.95

_ITEM_ZIPF = 1.1
_USER_ZIPF = 0.8
# Offsets the user ranks so that the heaviest users are heavy but not absurd
# (Zipf-Mandelbrot): with 200k users the top user makes ~0.5% of sessions, not 8%.
_USER_RANK_OFFSET = 5.0

_COUNTRIES = (
    ("United Kingdom", 0.60),
    ("Germany", 0.06),
    ("France", 0.055),
    ("Ireland", 0.045),
    ("Netherlands", 0.035),
    ("Spain", 0.03),
    ("Belgium", 0.025),
    ("United States", 0.025),
    ("Switzerland", 0.02),
    ("Portugal", 0.02),
    ("Italy", 0.02),
    ("Australia", 0.02),
    ("Norway", 0.015),
    ("Sweden", 0.015),
    ("Denmark", 0.015),
)
# Per-user device taste (Dirichlet), then shifted by time of day: phones and the app in
# the evening, desktops during office hours.
_DEVICE_ALPHA = np.array([1.6, 2.0, 0.4, 0.8])
_DEVICE_EVENING = np.array([0.7, 1.6, 1.0, 1.8])
_DEVICE_OFFICE = np.array([1.4, 0.9, 1.0, 0.8])

_WEEKDAY_WEIGHT = np.array([1.0, 0.97, 0.97, 1.0, 1.05, 1.25, 1.2])  # Monday first

_ADJECTIVES = (
    "vintage",
    "classic",
    "rustic",
    "modern",
    "handmade",
    "deluxe",
    "mini",
    "large",
    "retro",
    "scandi",
    "elegant",
    "charming",
    "cosy",
    "bright",
    "antique",
    "luxury",
    "simple",
    "festive",
    "botanical",
    "geometric",
)
_COLOURS = (
    "red",
    "blue",
    "green",
    "pink",
    "white",
    "black",
    "ivory",
    "gold",
    "silver",
    "cream",
    "navy",
    "sage",
    "mustard",
    "teal",
    "lilac",
    "grey",
    "copper",
    "natural",
)

# name -> (median price, nouns, materials, features, uses). Items of a category share
# these words, which is what later stages learn item vectors (TF-IDF/Word2Vec) from.
_CATEGORIES: dict[str, tuple[float, tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "kitchen": (
        12.0,
        ("mug", "teapot", "jug", "measuring spoons", "utensil pot", "cake tin"),
        ("ceramic", "enamel", "stainless steel", "stoneware"),
        ("dishwasher safe", "easy to clean", "heat resistant", "stackable"),
        ("baking", "morning coffee", "afternoon tea", "the kitchen worktop"),
    ),
    "garden": (
        18.0,
        ("planter", "watering can", "bird feeder", "trowel", "plant pot", "wind chime"),
        ("galvanised metal", "terracotta", "zinc", "weatherproof resin"),
        ("frost resistant", "drainage hole", "rust proof", "hanging loop"),
        ("the patio", "herbs and succulents", "garden birds", "the balcony"),
    ),
    "toys": (
        9.0,
        ("spinning top", "jigsaw puzzle", "wooden train", "skipping rope", "doll", "kite"),
        ("beech wood", "tin", "felt", "cotton"),
        ("non toxic paint", "ages three and up", "gift boxed", "classic play"),
        ("little ones", "rainy days", "party bags", "the playroom"),
    ),
    "candles": (
        7.0,
        ("pillar candle", "tea lights", "scented candle", "candle holder", "lantern", "votive"),
        ("soy wax", "beeswax", "glass", "mercury glass"),
        ("long burning", "vanilla scent", "clean burn", "hand poured"),
        ("relaxing evenings", "the dining table", "a cosy bath", "dinner parties"),
    ),
    "stationery": (
        4.0,
        ("notebook", "pencil set", "greeting card", "sticker sheet", "planner", "gift tag"),
        ("recycled paper", "kraft card", "linen paper", "wood"),
        ("lined pages", "foil detail", "hardback cover", "pack of six"),
        ("school", "journaling", "thank you notes", "the office desk"),
    ),
    "bath": (
        8.0,
        ("soap dish", "bath bomb", "wash bag", "toothbrush holder", "towel", "sponge"),
        ("porcelain", "organic cotton", "bamboo", "natural loofah"),
        ("gentle on skin", "quick drying", "lavender scent", "spa quality"),
        ("a relaxing soak", "the bathroom", "guest rooms", "travel"),
    ),
    "bedding": (
        30.0,
        ("duvet cover", "pillowcase", "throw", "cushion", "bedspread", "blanket"),
        ("brushed cotton", "linen", "wool", "velvet"),
        ("machine washable", "soft touch", "reversible", "hidden zip"),
        ("the bedroom", "cold nights", "the sofa", "a spare room"),
    ),
    "lighting": (
        22.0,
        ("lamp", "fairy lights", "lampshade", "night light", "string lights", "ceiling light"),
        ("brass", "rattan", "frosted glass", "paper"),
        ("warm white glow", "battery operated", "dimmable", "timer function"),
        ("reading", "the living room", "garden parties", "a nursery"),
    ),
    "jewellery": (
        15.0,
        ("necklace", "earrings", "bracelet", "ring", "brooch", "charm"),
        ("sterling silver", "gold plated", "glass beads", "pearl"),
        ("nickel free", "adjustable chain", "gift pouch", "hand finished"),
        ("everyday wear", "birthdays", "weddings", "a special occasion"),
    ),
    "bags": (
        14.0,
        ("tote bag", "shopping bag", "backpack", "purse", "lunch bag", "pouch"),
        ("canvas", "jute", "leather", "waxed cotton"),
        ("reusable", "zip closure", "inner pocket", "sturdy handles"),
        ("the weekly shop", "the beach", "commuting", "picnics"),
    ),
    "party": (
        5.0,
        ("bunting", "paper plates", "balloons", "cake toppers", "napkins", "party hats"),
        ("paper", "foil", "tissue", "card"),
        ("pack of twelve", "bright print", "easy to hang", "eco friendly"),
        ("birthdays", "baby showers", "summer parties", "celebrations"),
    ),
    "pets": (
        11.0,
        ("dog bowl", "cat toy", "pet bed", "lead", "treat jar", "collar"),
        ("rubber", "fleece", "stoneware", "nylon"),
        ("chew resistant", "non slip base", "machine washable", "adjustable fit"),
        ("puppies", "playful cats", "walks in the park", "sleepy pets"),
    ),
    "wall art": (
        25.0,
        ("print", "mirror", "wall clock", "photo frame", "tapestry", "sign"),
        ("oak", "metal", "canvas", "glass"),
        ("ready to hang", "silent movement", "fade resistant", "hand lettered"),
        ("the hallway", "a gallery wall", "the living room", "gifting"),
    ),
    "storage": (
        16.0,
        ("storage box", "basket", "jar", "shelf", "hook", "tin"),
        ("wicker", "seagrass", "enamel", "plywood"),
        ("stackable", "with lid", "easy to assemble", "space saving"),
        ("tidy cupboards", "toys and blankets", "the pantry", "the bathroom"),
    ),
    "tableware": (
        13.0,
        ("dinner plate", "bowl", "tumbler", "serving platter", "cake stand", "placemat"),
        ("porcelain", "melamine", "bone china", "recycled glass"),
        ("microwave safe", "set of four", "hand painted", "chip resistant"),
        ("family dinners", "picnics", "entertaining", "everyday meals"),
    ),
    "christmas": (
        6.0,
        ("bauble", "wreath", "stocking", "tree topper", "advent calendar", "garland"),
        ("glass", "felt", "pine cones", "wood"),
        ("hand decorated", "glitter finish", "hanging ribbon", "reusable every year"),
        ("the christmas tree", "the front door", "the festive season", "the mantelpiece"),
    ),
    "crafts": (
        7.0,
        ("knitting kit", "paint set", "embroidery hoop", "ribbon", "button jar", "stamp set"),
        ("wool", "watercolour", "cotton thread", "rubber"),
        ("beginner friendly", "full instructions", "assorted colours", "refillable"),
        ("creative afternoons", "scrapbooking", "handmade gifts", "kids crafts"),
    ),
    "baby": (
        12.0,
        ("bib", "rattle", "baby blanket", "teether", "soft toy", "sleepsuit"),
        ("organic cotton", "muslin", "silicone", "knitted wool"),
        ("gentle wash", "bpa free", "snap fastening", "extra soft"),
        ("newborns", "baby showers", "nap time", "the nursery"),
    ),
    "outdoor": (
        20.0,
        ("picnic blanket", "flask", "hammock", "camping mug", "cool bag", "deck chair"),
        ("waterproof nylon", "enamel", "stainless steel", "canvas"),
        ("insulated", "foldable", "lightweight", "carry strap"),
        ("camping trips", "the beach", "festivals", "days out"),
    ),
    "fragrance": (
        17.0,
        ("diffuser", "room spray", "wax melts", "incense", "scented sachet", "oil burner"),
        ("essential oil", "reed", "ceramic", "cotton"),
        ("fresh linen scent", "long lasting", "natural oils", "rose scent"),
        ("the living room", "wardrobes", "relaxation", "a fresh home"),
    ),
}


@dataclass(frozen=True)
class GeneratorResult:
    """What :func:`generate` wrote."""

    out_dir: str
    event_files: tuple[str, ...]
    catalog_file: str
    events: int
    bad_rows: int
    users: int
    items: int
    seconds: float


def generate(
    out_dir: str,
    users: int,
    items: int,
    events: int,
    seed: int = 42,
    fmt: str = "parquet",
    start_date: str = "2023-01-01",
    days: int = 365,
    events_per_file: int = 2_000_000,
    bad_row_rate: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
) -> GeneratorResult:
    """Write a synthetic event log and item catalog under ``out_dir``.

    ``events`` rows go to ``out_dir/events/part-NNNNN.<ext>`` (``events_per_file`` rows
    per file, ``.parquet``, ``.csv.gz`` or ``.jsonl.gz``) and one row per item to
    ``out_dir/catalog.csv``. About ``bad_row_rate`` of the event rows are replaced by
    deliberately broken ones (missing keys, unknown event type, non-positive purchase
    price, far-future timestamp, zero quantity, duplicate of the previous row, and in
    CSV/JSONL also unparsable price or timestamp); ``bad_rows`` in the result is exact.
    Event files left in ``events/`` by an earlier run are removed first, and this run's
    are removed again if it fails, so the folder never holds a partial data set.
    ``progress(done, total)`` is called after each chunk of events is written.
    """
    started = time.perf_counter()
    first_day = _validate(users, items, events, seed, fmt, start_date, days, events_per_file, bad_row_rate)
    out_dir = os.path.abspath(out_dir)
    events_dir = os.path.join(out_dir, "events")
    os.makedirs(events_dir, exist_ok=True)
    _remove_old_event_files(events_dir)

    catalog = _build_catalog(items, _rng(seed, 0))
    catalog_file = _write_catalog(catalog, os.path.join(out_dir, "catalog.csv"))
    world = _World(
        catalog=catalog,
        users=_build_users(users, _rng(seed, 1), catalog.category_popularity),
        calendar=_build_calendar(first_day, days),
        ids=_IdFormats(users, items, events),
    )
    sink = _EventSink(events_dir, fmt, events_per_file)
    bad_rows = _write_events(world, sink, events, seed, fmt, bad_row_rate, progress)
    return GeneratorResult(
        out_dir=out_dir,
        event_files=tuple(sink.files),
        catalog_file=catalog_file,
        events=events,
        bad_rows=bad_rows,
        users=users,
        items=items,
        seconds=time.perf_counter() - started,
    )


@dataclass
class _World:
    """Everything fixed before the first event: items, users, calendar, id formats."""

    catalog: _Catalog
    users: _Users
    calendar: _Calendar
    ids: _IdFormats


def _write_events(
    world: _World,
    sink: _EventSink,
    events: int,
    seed: int,
    fmt: str,
    bad_row_rate: float,
    progress: Callable[[int, int], None] | None,
) -> int:
    """Generate and write all events chunk by chunk; the number of bad rows written."""
    bad_rows = 0
    session_base = 0
    done = 0
    pending: Future | None = None
    # One writer thread: Parquet encoding and gzip release the GIL, so writing chunk k
    # overlaps with generating chunk k+1 on the second core. Two chunks in flight at most.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="shoprec-gen-writer") as pool:
        try:
            for index, (lo, hi) in enumerate(_chunks(events)):
                chunk = _generate_chunk(hi - lo, lo / events, hi / events, session_base, world, _rng(seed, 2, index))
                session_base += chunk.sessions
                if bad_row_rate > 0:
                    bad_rows += _corrupt(chunk, bad_row_rate, fmt, world.calendar, _rng(seed, 3, index))
                payload = _encode(chunk, fmt, world.ids)
                if pending is not None:
                    pending.result()
                    _report(progress, done, events)
                pending = pool.submit(sink.write, lo, payload)
                done = hi
            if pending is not None:
                pending.result()
            sink.close()
        except BaseException:
            if pending is not None:
                pending.exception()  # wait: the writer must not be mid-file while we delete
            sink.abort()
            raise
    _report(progress, events, events)
    return bad_rows


# ---------------------------------------------------------------- arguments


def _validate(
    users: int,
    items: int,
    events: int,
    seed: int,
    fmt: str,
    start_date: str,
    days: int,
    events_per_file: int,
    bad_row_rate: float,
) -> np.datetime64:
    """Check the arguments; the first day as a numpy date."""
    for name, value in (
        ("users", users),
        ("items", items),
        ("events", events),
        ("days", days),
        ("events_per_file", events_per_file),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative whole number, got {seed!r}.")
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}, got {fmt!r}.")
    if not isinstance(bad_row_rate, (int, float)) or not 0.0 <= bad_row_rate <= 0.5:
        raise ValueError(f"bad_row_rate must be between 0 and 0.5, got {bad_row_rate!r}.")
    try:
        first = date.fromisoformat(str(start_date))
    except ValueError:
        raise ValueError(f"start_date must be an ISO date like 2023-01-01, got {start_date!r}.") from None
    return np.datetime64(first, "D")


def _rng(seed: int, *stream: int) -> np.random.Generator:
    """An independent random stream per purpose and chunk, so that one part of the data
    does not shift when another part draws more or fewer numbers."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), *stream]))


def _chunks(events: int) -> list[tuple[int, int]]:
    return [(lo, min(lo + CHUNK_EVENTS, events)) for lo in range(0, events, CHUNK_EVENTS)]


def _report(progress: Callable[[int, int], None] | None, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)


# ---------------------------------------------------------------- catalog


@dataclass
class _Catalog:
    category: np.ndarray  # category code per item
    price: np.ndarray  # list price per item
    category_popularity: np.ndarray  # share of all item popularity per category
    # Per-category alias tables (Walker) over the items sorted by category: drawing an
    # item is then O(1), where a binary search per event was the slowest step.
    cat_first: np.ndarray  # per category: first slot of its table
    cat_size: np.ndarray  # per category: number of items (slots)
    slot_item: np.ndarray  # item in each slot
    slot_keep: np.ndarray  # chance of keeping the slot's own item
    slot_alias: np.ndarray  # item drawn otherwise
    table: pa.Table  # the catalog as written


def _build_catalog(items: int, rng: np.random.Generator) -> _Catalog:
    names = list(_CATEGORIES)
    n_cat = len(names)
    # Uneven category sizes, as in a real shop.
    category = rng.choice(n_cat, size=items, p=rng.dirichlet(np.full(n_cat, 4.0))).astype(np.int16)
    level = np.array([_CATEGORIES[n][0] for n in names])
    price = np.maximum(np.round(rng.lognormal(np.log(level[category]), 0.45), 2), 0.29)
    weight = _item_popularity(category, n_cat, rng)

    by_category = np.argsort(category, kind="stable")
    counts = np.bincount(category, minlength=n_cat)
    first = np.cumsum(counts) - counts
    keep = np.ones(items)
    alias = by_category.copy()
    for c in np.flatnonzero(counts):
        members = slice(first[c], first[c] + counts[c])
        keep[members], local = _alias_table(weight[by_category[members]])
        alias[members] = by_category[members][local]
    totals = np.bincount(category, weights=weight, minlength=n_cat)
    table = _catalog_table(items, category, price, names, rng)
    return _Catalog(
        category=category,
        price=price,
        category_popularity=totals / totals.sum(),
        cat_first=first,
        cat_size=counts,
        slot_item=by_category.astype(np.int32),
        slot_keep=keep,
        slot_alias=alias.astype(np.int32),
        table=table,
    )


def _alias_table(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vose's alias method: per slot, the chance to keep it and the index to take otherwise."""
    n = len(weight)
    scaled = weight * (n / weight.sum())
    keep = np.ones(n)
    alias = np.arange(n)
    small = [int(i) for i in np.flatnonzero(scaled < 1.0)]
    large = [int(i) for i in np.flatnonzero(scaled >= 1.0)]
    values = scaled.tolist()
    while small and large:
        s, g = small.pop(), large[-1]
        keep[s], alias[s] = values[s], g
        values[g] -= 1.0 - values[s]
        if values[g] < 1.0:
            small.append(large.pop())
    # Left-overs are 1 up to rounding error.
    return keep, alias


def _item_popularity(category: np.ndarray, n_cat: int, rng: np.random.Generator) -> np.ndarray:
    """Zipf weights over a random ranking of the items, times a per-category appeal.

    The random ranking keeps popularity independent of the item id, so every category
    gets its own best sellers; the category factor reshuffles the global order a bit
    (an item ranked 50th in a hot category beats one ranked 40th in a quiet one).
    """
    rank = rng.permutation(len(category)) + 1.0
    appeal = rng.lognormal(0.0, 0.5, size=n_cat)
    return rank**-_ITEM_ZIPF * appeal[category]


def _catalog_table(
    items: int, category: np.ndarray, price: np.ndarray, names: list[str], rng: np.random.Generator
) -> pa.Table:
    nouns, noun_at = _flat_vocab(names, 1)
    materials, material_at = _flat_vocab(names, 2)
    features, feature_at = _flat_vocab(names, 3)
    uses, use_at = _flat_vocab(names, 4)

    def pick(words: pa.Array, at: tuple[np.ndarray, np.ndarray]) -> pa.Array:
        start, count = at
        idx = start[category] + (rng.random(items) * count[category]).astype(np.int64)
        return pc.take(words, pa.array(idx))

    def shared(words: tuple[str, ...]) -> pa.Array:
        return pc.take(pa.array(words), pa.array(rng.integers(0, len(words), items)))

    adjective, colour, adjective2 = shared(_ADJECTIVES), shared(_COLOURS), shared(_ADJECTIVES)
    material, noun = pick(materials, material_at), pick(nouns, noun_at)
    # Two different features of the item's category.
    start, count = feature_at
    f1 = start[category] + (rng.random(items) * count[category]).astype(np.int64)
    f2 = start[category] + (f1 - start[category] + 1 + rng.integers(0, 2, items)) % count[category]
    feature1, feature2 = pc.take(features, pa.array(f1)), pc.take(features, pa.array(f2))
    use = pick(uses, use_at)

    title = pc.utf8_title(pc.binary_join_element_wise(adjective, colour, material, noun, " "))
    description = pc.binary_join_element_wise(
        pc.utf8_capitalize(adjective2),
        " ",
        noun,
        " in ",
        colour,
        " ",
        material,
        ", ",
        feature1,
        " and ",
        feature2,
        ", perfect for ",
        use,
        ".",
        "",
    )
    item_id = _strings(_digit_matrix(b"i", np.arange(items), _IdFormats.item_width(items)))
    category_name = pc.take(pa.array(names), pa.array(category))
    columns = (item_id, title, description, category_name, pa.array(price))
    return pa.table(dict(zip(CATALOG_COLUMNS, columns, strict=True)))


def _flat_vocab(names: list[str], field: int) -> tuple[pa.Array, tuple[np.ndarray, np.ndarray]]:
    """All categories' words of one kind in one array, with each category's start and count,
    so that a word can be drawn for every item at once."""
    lists = [cast(tuple[str, ...], _CATEGORIES[n][field]) for n in names]  # fields 1-4: word tuples
    counts = np.array([len(words) for words in lists])
    starts = np.cumsum(counts) - counts
    return pa.array([w for words in lists for w in words]), (starts, counts)


def _write_catalog(catalog: _Catalog, path: str) -> str:
    tmp = _temp_name(path)
    try:
        with pa.OSFile(tmp, "wb") as out:
            # Arrow quotes the header names; write them plain, and let Arrow quote the
            # text values (descriptions contain commas).
            out.write(",".join(catalog.table.column_names).encode() + b"\n")
            pacsv.write_csv(catalog.table, out, pacsv.WriteOptions(include_header=False))
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise
    return path


# ---------------------------------------------------------------- users and calendar


@dataclass
class _Users:
    cum_activity: np.ndarray  # cumulative activity weight, to draw the user of a session
    country: np.ndarray  # country code per user
    device_taste: np.ndarray  # (users, 4) device preference per user
    favourites: np.ndarray  # (users, 3) favourite categories per user, most liked first


def _build_users(users: int, rng: np.random.Generator, category_popularity: np.ndarray) -> _Users:
    rank = rng.permutation(users) + _USER_RANK_OFFSET
    shares = np.array([p for _, p in _COUNTRIES])
    country = rng.choice(len(_COUNTRIES), size=users, p=shares / shares.sum()).astype(np.uint8)
    taste = rng.standard_gamma(_DEVICE_ALPHA, size=(users, len(DEVICES))).astype(np.float32)
    # Favourite categories follow overall category popularity, so that the item
    # popularity seen in the events keeps its power law.
    cum_cat = np.cumsum(category_popularity)
    favourites = np.minimum(
        np.searchsorted(cum_cat, rng.random((users, 3)) * cum_cat[-1], side="right"), len(cum_cat) - 1
    ).astype(np.int16)
    return _Users(cum_activity=np.cumsum(rank**-_USER_ZIPF), country=country, device_taste=taste, favourites=favourites)


@dataclass
class _Calendar:
    first_second: int  # epoch seconds of the first day
    end_second: int  # epoch seconds just after the last day
    cum_day: np.ndarray  # cumulative share of sessions per day
    cum_hour: np.ndarray  # cumulative share of sessions per hour of day


def _build_calendar(first_day: np.datetime64, days: int) -> _Calendar:
    dates = first_day + np.arange(days)
    day_weight = _weekday_weight(dates) * _season_weight(dates)
    first_second = int(first_day.astype("datetime64[s]").astype(np.int64))
    return _Calendar(
        first_second=first_second,
        end_second=first_second + days * 86_400,
        cum_day=np.cumsum(day_weight) / day_weight.sum(),
        cum_hour=np.cumsum(_hour_weight()) / _hour_weight().sum(),
    )


def _weekday_weight(dates: np.ndarray) -> np.ndarray:
    monday_first = (dates.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    return _WEEKDAY_WEIGHT[monday_first]


def _season_weight(dates: np.ndarray) -> np.ndarray:
    """Christmas shopping: rising through November to a peak early December, falling off
    sharply once the last posting days before Christmas have passed."""
    peak = (dates.astype("datetime64[Y]") + np.timedelta64(11, "M")).astype("datetime64[D]") + 7
    delta = (dates - peak).astype(np.int64)
    width = np.where(delta < 0, 20.0, 9.0)
    return 1.0 + 1.2 * np.exp(-0.5 * (delta / width) ** 2)


def _hour_weight() -> np.ndarray:
    """Few sessions at night, a lunchtime peak and a bigger evening peak."""
    hour = np.arange(24) + 0.5
    awake = np.where((hour > 7) & (hour < 23.5), 0.35, 0.04)
    return awake + 0.9 * np.exp(-0.5 * ((hour - 12.5) / 1.6) ** 2) + 1.2 * np.exp(-0.5 * ((hour - 20.5) / 1.8) ** 2)


# ---------------------------------------------------------------- events


@dataclass
class _Chunk:
    """One chunk of events as numpy columns (codes and numbers, formatted later)."""

    sessions: int
    user: np.ndarray
    item: np.ndarray
    event_type: np.ndarray
    event_time: np.ndarray  # epoch seconds
    session: np.ndarray  # global session number
    device: np.ndarray
    country: np.ndarray
    price: np.ndarray
    quantity: np.ndarray
    # Only set when rows were broken on purpose: empty user and session id, and (text
    # formats) unparsable price / timestamp.
    no_key: np.ndarray | None = None
    bad_price_text: np.ndarray | None = None
    bad_time_text: np.ndarray | None = None

    def columns(self) -> list[str]:
        return [
            "user",
            "item",
            "event_type",
            "event_time",
            "session",
            "device",
            "country",
            "price",
            "quantity",
            "no_key",
            "bad_price_text",
            "bad_time_text",
        ]


def _generate_chunk(
    n: int, time_lo: float, time_hi: float, session_base: int, world: _World, rng: np.random.Generator
) -> _Chunk:
    """``n`` events from whole sessions (the last one cut to fit).

    The chunk covers the share [time_lo, time_hi) of all sessions in time order, so the
    files come out roughly in time order like a real log.
    """
    catalog, population, calendar = world.catalog, world.users, world.calendar
    lengths = _session_lengths(n, rng)
    m = len(lengths)
    user = np.minimum(
        np.searchsorted(population.cum_activity, rng.random(m) * population.cum_activity[-1], side="right"),
        len(population.cum_activity) - 1,
    )
    start, hour = _session_starts(m, time_lo, time_hi, calendar, rng)
    order = np.argsort(start, kind="stable")
    user, start, hour = user[order], start[order], hour[order]
    device = _session_devices(user, hour, population, rng)
    primary, secondary = _session_categories(user, population, rng)

    first = np.cumsum(lengths) - lengths
    session_of = np.repeat(np.arange(m), lengths)
    position = np.arange(n) - first[session_of]
    offset = _event_offsets(position, first, lengths, rng)
    # Sessions starting late on the last day are moved earlier so that they end in range.
    duration = offset[first + lengths - 1]
    start = np.minimum(start, calendar.end_second - 1 - duration)
    event_time = start[session_of] + offset

    category = _event_categories(primary[session_of], secondary[session_of], catalog, rng)
    item = _draw_items(category, catalog, rng)
    # Best sellers dominate small categories so strongly that the same item would often be
    # drawn twice in a row; one redraw keeps repeat views at a believable level.
    again = np.flatnonzero((position > 0) & (item == np.roll(item, 1)))
    item[again] = _draw_items(category[again], catalog, rng)
    event_type = _funnel(position, rng)
    item = _follow_funnel(item, event_type, position, rng)
    price, quantity = _prices_and_quantities(item, event_type, catalog, rng)
    return _Chunk(
        sessions=m,
        user=user[session_of],
        item=item,
        event_type=event_type,
        event_time=event_time,
        session=session_base + session_of,
        device=device[session_of],
        country=population.country[user][session_of],
        price=price,
        quantity=quantity,
    )


def _session_lengths(n: int, rng: np.random.Generator) -> np.ndarray:
    """Geometric session lengths (mean ~5) adding up to exactly ``n``."""
    parts = []
    total = 0
    while total < n:
        guess = int((n - total) * _SESSION_P * 1.1) + 16
        part = np.minimum(rng.geometric(_SESSION_P, size=guess), _MAX_SESSION_EVENTS)
        parts.append(part)
        total += int(part.sum())
    lengths = np.concatenate(parts)
    ends = np.cumsum(lengths)
    m = int(np.searchsorted(ends, n)) + 1
    lengths = lengths[:m].copy()
    lengths[-1] -= int(ends[m - 1]) - n
    return lengths


def _session_starts(
    m: int, time_lo: float, time_hi: float, calendar: _Calendar, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Start second (epoch) and hour of day of each session."""
    share = time_lo + (time_hi - time_lo) * rng.random(m)
    day = np.minimum(np.searchsorted(calendar.cum_day, share, side="right"), len(calendar.cum_day) - 1)
    hour = np.minimum(np.searchsorted(calendar.cum_hour, rng.random(m), side="right"), 23)
    start = calendar.first_second + day * 86_400 + hour * 3_600 + rng.integers(0, 3_600, m)
    return start.astype(np.int64), hour


def _session_devices(user: np.ndarray, hour: np.ndarray, population: _Users, rng: np.random.Generator) -> np.ndarray:
    taste = population.device_taste[user]
    evening = (hour >= 18) | (hour < 1)
    office = (hour >= 9) & (hour < 17)
    taste *= np.where(evening[:, None], _DEVICE_EVENING, np.where(office[:, None], _DEVICE_OFFICE, 1.0))
    cum = np.cumsum(taste, axis=1)
    return (rng.random(len(user))[:, None] * cum[:, -1:] >= cum).sum(axis=1).clip(0, 3).astype(np.uint8)


def _session_categories(
    user: np.ndarray, population: _Users, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A session is mostly about one of the user's favourite categories, partly another."""
    favourites = population.favourites[user]
    first = np.searchsorted([0.65, 0.9, 1.0], rng.random(len(user)), side="right").clip(0, 2)
    second = (first + 1 + rng.integers(0, 2, len(user))) % 3
    rows = np.arange(len(user))
    return favourites[rows, first], favourites[rows, second]


def _event_offsets(
    position: np.ndarray, first: np.ndarray, lengths: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Seconds from session start: gaps of a few seconds to minutes, at least one second
    so that no two events of a session share a timestamp."""
    gap = np.clip(np.rint(rng.lognormal(np.log(_MEDIAN_GAP_SECONDS), 1.0, len(position))), 1, _MAX_GAP_SECONDS)
    gap = gap.astype(np.int64)
    gap[position == 0] = 0
    total = np.cumsum(gap)
    return total - np.repeat(total[first], lengths)


def _event_categories(
    primary: np.ndarray, secondary: np.ndarray, catalog: _Catalog, rng: np.random.Generator
) -> np.ndarray:
    u = rng.random(len(primary))
    category = np.where(u < 0.75, primary, secondary)
    # A little browsing outside the user's favourites.
    stray = u >= 0.96
    if stray.any():
        cum = np.cumsum(catalog.category_popularity)
        pick = np.searchsorted(cum, rng.random(int(stray.sum())) * cum[-1], side="right")
        category[stray] = np.minimum(pick, len(cum) - 1)
    return category


def _draw_items(category: np.ndarray, catalog: _Catalog, rng: np.random.Generator) -> np.ndarray:
    """Items by popularity within each event's category (alias method, one draw per event:
    its integer part picks the slot, its fraction decides slot item or alias)."""
    scaled = rng.random(len(category)) * catalog.cat_size[category]
    whole = scaled.astype(np.int64)
    slot = catalog.cat_first[category] + whole
    keep = (scaled - whole) < catalog.slot_keep[slot]
    return np.where(keep, catalog.slot_item[slot], catalog.slot_alias[slot])


def _funnel(position: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    u = rng.random(len(position))
    event_type = np.full(len(position), _VIEW, dtype=np.uint8)
    later = position > 0
    event_type[later & (u < _P_CART)] = _CART
    event_type[later & (u >= _P_CART) & (u < _P_CART + _P_PURCHASE)] = _PURCHASE
    return event_type


def _follow_funnel(
    item: np.ndarray, event_type: np.ndarray, position: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Carts are mostly of the item just viewed, purchases of the last item put in the
    cart (or viewed) earlier in the same session."""
    index = np.arange(len(item))
    session_first = index - position
    last_view = _last_index_before(event_type == _VIEW, index)
    u = rng.random(len(item))
    cart = (event_type == _CART) & (u < _P_CART_OF_LAST_VIEW) & (last_view >= session_first)
    item = item.copy()
    item[cart] = item[last_view[cart]]
    last_cart = _last_index_before(event_type == _CART, index)
    purchase = (event_type == _PURCHASE) & (u < _P_PURCHASE_OF_SEEN)
    source = np.where(last_cart >= session_first, last_cart, last_view)
    purchase &= source >= session_first
    item[purchase] = item[source[purchase]]
    return item


def _last_index_before(mask: np.ndarray, index: np.ndarray) -> np.ndarray:
    """For each row, the index of the last earlier row where ``mask`` holds (-1 if none)."""
    marked = np.where(mask, index, -1)
    last = np.maximum.accumulate(marked)
    return np.concatenate(([-1], last[:-1]))


def _prices_and_quantities(
    item: np.ndarray, event_type: np.ndarray, catalog: _Catalog, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    n = len(item)
    discount = np.array([1.0, 0.9, 0.85, 0.8, 0.7, 0.5])
    pick = np.searchsorted([0.85, 0.9, 0.94, 0.97, 0.99, 1.0], rng.random(n), side="right").clip(0, 5)
    price = np.maximum(np.round(catalog.price[item] * discount[pick], 2), 0.01)
    quantity = np.ones(n, dtype=np.int32)
    purchase = event_type == _PURCHASE
    sizes = np.searchsorted([0.6, 0.82, 0.92, 0.96, 0.98, 1.0], rng.random(int(purchase.sum())), side="right")
    quantity[purchase] = sizes.clip(0, 5) + 1
    return price, quantity


# ---------------------------------------------------------------- deliberately bad rows

_MISSING_KEY, _BAD_TYPE, _BAD_PRICE, _FUTURE, _ZERO_QTY, _DUPLICATE, _PRICE_TEXT, _TIME_TEXT = range(8)


def _corrupt(chunk: _Chunk, rate: float, fmt: str, calendar: _Calendar, rng: np.random.Generator) -> int:
    """Break about ``rate`` of the chunk's rows in place; the number broken."""
    n = len(chunk.item)
    rows = np.flatnonzero(rng.random(n) < rate)
    kinds = 8 if fmt != "parquet" else 6
    kind = rng.integers(0, kinds, len(rows))
    # A duplicate must copy a good row, else it would not be one more bad row.
    broken = np.zeros(n, dtype=bool)
    broken[rows] = True
    dup_ok = (rows > 0) & ~broken[np.maximum(rows - 1, 0)]
    kind[(kind == _DUPLICATE) & ~dup_ok] = _BAD_TYPE

    chunk.no_key = _mask(n, rows[kind == _MISSING_KEY])
    chunk.event_type[rows[kind == _BAD_TYPE]] = _CLICKED
    _non_positive_purchase(chunk, rows[kind == _BAD_PRICE])
    chunk.event_time[rows[kind == _FUTURE]] += _seconds_until_2099(calendar)
    chunk.quantity[rows[kind == _ZERO_QTY]] = 0
    if fmt != "parquet":
        chunk.bad_price_text = _mask(n, rows[kind == _PRICE_TEXT])
        chunk.bad_time_text = _mask(n, rows[kind == _TIME_TEXT])
    dup = rows[kind == _DUPLICATE]
    for name in chunk.columns():
        column = getattr(chunk, name)
        if column is not None:
            column[dup] = column[dup - 1]
    return len(rows)


def _mask(n: int, rows: np.ndarray) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[rows] = True
    return mask


def _non_positive_purchase(chunk: _Chunk, rows: np.ndarray) -> None:
    chunk.event_type[rows] = _PURCHASE
    # Half free, half negative: both must be caught, and they are caught by different rules.
    chunk.price[rows] = np.where(np.arange(len(rows)) % 2 == 0, 0.0, -chunk.price[rows])


def _seconds_until_2099(calendar: _Calendar) -> int:
    """Shift that moves the first year of the data to 2099 (a date no real log has yet)."""
    year_start = np.datetime64(calendar.first_second, "s").astype("datetime64[Y]").astype("datetime64[s]")
    return int((np.datetime64("2099-01-01", "s") - year_start).astype(np.int64))


# ---------------------------------------------------------------- formatting


class _IdFormats:
    """Zero-padded ids, wide enough that they sort as text, with ids made once per user
    and item and looked up per event."""

    def __init__(self, users: int, items: int, events: int):
        self.user_bytes = _digit_matrix(b"u", np.arange(users), max(7, len(str(users - 1))))
        self.item_bytes = _digit_matrix(b"i", np.arange(items), self.item_width(items))
        self.session_width = max(11, len(str(events - 1)))

    @staticmethod
    def item_width(items: int) -> int:
        return max(6, len(str(items - 1)))


def _digit_matrix(prefix: bytes, numbers: np.ndarray, width: int) -> np.ndarray:
    """ASCII rows ``prefix + zero-padded number``, one row per number."""
    out = np.empty((len(numbers), len(prefix) + width), dtype=np.uint8)
    out[:, : len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    rest = numbers.astype(np.int64)
    for col in range(out.shape[1] - 1, len(prefix) - 1, -1):
        rest, digit = np.divmod(rest, 10)
        out[:, col] = digit + 48
    return out


def _strings(matrix: np.ndarray, empty: np.ndarray | None = None) -> pa.Array:
    """A string array straight from fixed-width ASCII rows (rows in ``empty`` become "")."""
    n, width = matrix.shape
    if empty is None or not empty.any():
        data = np.ascontiguousarray(matrix).reshape(-1)
        offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    else:
        data = np.ascontiguousarray(matrix[~empty]).reshape(-1)
        offsets = np.concatenate(([0], np.cumsum(np.where(empty, 0, width)))).astype(np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def _labels(names: tuple[str, ...], codes: np.ndarray) -> pa.Array:
    return pc.take(pa.array(names, pa.string()), pa.array(codes))


_TIME_OF_DAY: np.ndarray | None = None


def _iso_times(seconds: np.ndarray) -> np.ndarray:
    """'YYYY-MM-DDTHH:MM:SSZ' rows; via per-day and per-second-of-day lookup tables,
    much faster than strftime."""
    global _TIME_OF_DAY
    if _TIME_OF_DAY is None:
        sod = np.arange(86_400)
        table = np.empty((86_400, 8), dtype=np.uint8)
        for col, value in (
            (0, sod // 36_000),
            (1, sod // 3_600 % 10),
            (3, sod % 3_600 // 600),
            (4, sod % 600 // 60),
            (6, sod % 60 // 10),
            (7, sod % 10),
        ):
            table[:, col] = value + 48
        table[:, 2] = table[:, 5] = ord(":")
        _TIME_OF_DAY = table
    day, sod = np.divmod(seconds, 86_400)
    first = int(day.min())
    dates = np.arange(first, int(day.max()) + 1).astype("datetime64[D]").astype("S10")
    date_bytes = np.frombuffer(dates.tobytes(), dtype=np.uint8).reshape(-1, 10)
    out = np.empty((len(seconds), 20), dtype=np.uint8)
    out[:, :10] = date_bytes[day - first]
    out[:, 10] = ord("T")
    out[:, 11:19] = _TIME_OF_DAY[sod]
    out[:, 19] = ord("Z")
    return out


def _encode(chunk: _Chunk, fmt: str, ids: _IdFormats) -> pa.Table | pa.Array:
    """The chunk as an Arrow table (Parquet, CSV) or as JSON lines (one string per row)."""
    text = fmt != "parquet"
    user = ids.user_bytes[chunk.user]
    item = ids.item_bytes[chunk.item]
    session = _session_ids(chunk, ids.session_width)
    iso = _iso_times(chunk.event_time) if text else None
    columns = {
        "user_id": _strings(user, chunk.no_key),
        "item_id": _strings(item),
        "event_type": _labels(_TYPE_NAMES, chunk.event_type),
        "event_time": _text_times(iso, chunk) if iso is not None else _timestamps(chunk.event_time),
        "session_id": _strings(session, chunk.no_key),
        "device": _labels(DEVICES, chunk.device),
        "country": _labels(_COUNTRY_NAMES, chunk.country),
        "price": _text_prices(chunk) if text else pa.array(chunk.price, pa.float64()),
        "quantity": pa.array(chunk.quantity, pa.int32()) if not text else pa.array(chunk.quantity).cast(pa.string()),
    }
    if fmt == "jsonl":
        assert iso is not None  # a text format
        return _json_lines(columns, chunk, user, item, session, iso)
    return pa.table(columns)


_COUNTRY_NAMES = tuple(c for c, _ in _COUNTRIES)


def _session_ids(chunk: _Chunk, width: int) -> np.ndarray:
    # Formatted once per session (about five times fewer numbers than events).
    first = int(chunk.session.min())
    per_session = _digit_matrix(b"s", np.arange(first, int(chunk.session.max()) + 1), width)
    return per_session[chunk.session - first]


def _timestamps(seconds: np.ndarray) -> pa.Array:
    return pa.array(seconds * 1_000_000, pa.int64()).view(pa.timestamp("us", tz="UTC"))


def _text_times(iso: np.ndarray, chunk: _Chunk) -> pa.Array:
    times = _strings(iso)
    if chunk.bad_time_text is not None and chunk.bad_time_text.any():
        times = pc.if_else(pa.array(chunk.bad_time_text), "not-a-date", times)
    return times


def _text_prices(chunk: _Chunk) -> pa.Array:
    prices = pa.array(chunk.price, pa.float64()).cast(pa.string())
    if chunk.bad_price_text is not None and chunk.bad_price_text.any():
        prices = pc.if_else(pa.array(chunk.bad_price_text), "abc", prices)
    return prices


def _irregular_rows(chunk: _Chunk) -> np.ndarray:
    """Rows whose id or timestamp text does not have the usual fixed width."""
    masks = [m for m in (chunk.no_key, chunk.bad_price_text, chunk.bad_time_text) if m is not None]
    return np.logical_or.reduce(masks) if masks else np.zeros(len(chunk.item), dtype=bool)


def _json_lines(
    columns: dict[str, pa.Array],
    chunk: _Chunk,
    user: np.ndarray,
    item: np.ndarray,
    session: np.ndarray,
    iso: np.ndarray,
) -> pa.Array:
    """One JSON object per row; all values are plain ASCII without quotes or backslashes,
    so nothing needs escaping.

    Arrow's element-wise join costs about the same per argument as per row, so the fast
    path packs the fixed-width runs (ids, timestamp and the keys between them) into two
    byte matrices and folds the keys around the labels into the labels themselves: seven
    pieces a row instead of thirty. The few deliberately broken rows, whose widths differ,
    are then rebuilt the plain way.
    """
    head = _fixed_text(b'{"user_id":"', user, b'","item_id":"', item, b'","event_type":"')
    middle = _fixed_text(iso, b'","session_id":"', session, b'","device":"')
    lines = pc.binary_join_element_wise(
        head,
        _labels(tuple(f'{t}","event_time":"' for t in _TYPE_NAMES), chunk.event_type),
        middle,
        _labels(tuple(f'{d}","country":"' for d in DEVICES), chunk.device),
        _labels(tuple(f'{c}","price":' for c in _COUNTRY_NAMES), chunk.country),
        columns["price"],
        _labels(tuple(f',"quantity":{q}}}\n' for q in range(int(chunk.quantity.max()) + 1)), chunk.quantity),
        "",
    )
    irregular = _irregular_rows(chunk)
    if irregular.any():
        rows = pa.array(np.flatnonzero(irregular))
        exact = _json_lines_plain(
            {k: v.take(rows) for k, v in columns.items()},
            None if chunk.bad_price_text is None else chunk.bad_price_text[irregular],
        )
        lines = pc.replace_with_mask(lines, pa.array(irregular), exact)
    return lines


def _fixed_text(*parts: bytes | np.ndarray) -> pa.Array:
    """Rows of constant bytes and (rows, width) byte matrices, side by side."""
    n = next(len(p) for p in parts if isinstance(p, np.ndarray))
    widths = [len(p) if isinstance(p, bytes) else p.shape[1] for p in parts]
    out = np.empty((n, sum(widths)), dtype=np.uint8)
    col = 0
    for part, width in zip(parts, widths, strict=True):
        out[:, col : col + width] = np.frombuffer(part, dtype=np.uint8) if isinstance(part, bytes) else part
        col += width
    return _strings(out)


def _json_lines_plain(columns: dict[str, pa.Array], bad_price: np.ndarray | None) -> pa.Array:
    price = columns["price"]
    if bad_price is not None and bad_price.any():
        # The unparsable price is sent as a JSON string, the good ones as numbers.
        price = pc.if_else(pa.array(bad_price), '"abc"', price)
    parts: list[pa.Array | str] = ["{"]
    for name in EVENT_COLUMNS:
        if name in ("price", "quantity"):
            parts += [f'"{name}":', price if name == "price" else columns[name]]
        else:
            parts += [f'"{name}":"', columns[name], '"']
        parts.append("," if name != EVENT_COLUMNS[-1] else "}\n")
    return pc.binary_join_element_wise(*parts, "")


# ---------------------------------------------------------------- writing


# Dictionary encoding only where values repeat (not for near-unique session ids, where
# building a dictionary that is then dropped costs time), and min/max statistics only
# where a reader can prune on them; both together make writing ~40% faster.
_PARQUET_OPTIONS = {
    "use_dictionary": ["user_id", "item_id", "event_type", "device", "country"],
    "write_statistics": ["event_time", "event_type", "price", "quantity"],
}


class _EventSink:
    """Cuts the stream of chunks into files of ``events_per_file`` rows.

    Used from the single writer thread only. Each file is written under a hidden
    temporary name (ignored by Spark) and renamed when complete.
    """

    def __init__(self, events_dir: str, fmt: str, events_per_file: int):
        self.events_dir = events_dir
        self.fmt = fmt
        self.per_file = events_per_file
        self.files: list[str] = []
        self._index = -1
        self._tmp: str | None = None
        self._parquet: pq.ParquetWriter | None = None
        self._raw: BinaryIO | None = None
        self._gzip: zlib._Compress | None = None  # typeshed's name for what zlib.compressobj returns

    def write(self, row0: int, payload: pa.Table | pa.Array) -> None:
        """Write rows ``row0 ..`` of the stream, splitting them at file boundaries."""
        done = 0
        while done < len(payload):
            row = row0 + done
            index = row // self.per_file
            if index != self._index:
                self._finish()
                self._open(index)
            take = min(len(payload) - done, (index + 1) * self.per_file - row)
            self._write_rows(payload.slice(done, take), header=row % self.per_file == 0)
            done += take

    def close(self) -> None:
        self._finish()

    def abort(self) -> None:
        for handle in (self._parquet, self._raw):
            try:
                if handle is not None:
                    handle.close()
            except Exception:  # cleaning up after an earlier error; that one matters
                pass
        # A partial data set is worse than none: a test could silently run on it.
        for path in [self._tmp, *self.files]:
            if path is not None:
                _unlink(path)
        self._parquet = self._raw = self._tmp = None
        self.files = []

    def _path(self, index: int) -> str:
        return os.path.join(self.events_dir, f"part-{index:05d}.{FORMATS[self.fmt]}")

    def _open(self, index: int) -> None:
        self._index = index
        self._tmp = _temp_name(self._path(index))
        if self.fmt == "parquet":
            self._parquet = None  # opened on the first table, which carries the schema
        else:
            self._raw = open(self._tmp, "wb")  # noqa: SIM115  (kept open across writes; _finish or abort closes it)
            # Level 1: gzip at the default level would be the slowest part of the run,
            # for files only ~15% smaller.
            self._gzip = zlib.compressobj(1, zlib.DEFLATED, 31)

    def _write_rows(self, rows: pa.Table | pa.Array, header: bool) -> None:
        if self.fmt == "parquet":
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self._tmp, rows.schema, compression="snappy", **_PARQUET_OPTIONS)
            self._parquet.write_table(rows, row_group_size=len(rows))
        elif self.fmt == "csv":
            buf = pa.BufferOutputStream()
            if header:  # Arrow would quote the names; a plain header is what people expect
                buf.write(",".join(rows.schema.names).encode() + b"\n")
            # Bigger batches than Arrow's default (1024 rows) make this ~5x faster.
            options = pacsv.WriteOptions(include_header=False, quoting_style="none", batch_size=65_536)
            pacsv.write_csv(rows, buf, options)
            raw, gz = self._text_file()
            raw.write(gz.compress(buf.getvalue()))
        else:
            raw, gz = self._text_file()
            raw.write(gz.compress(_string_bytes(rows)))

    def _text_file(self) -> tuple[BinaryIO, zlib._Compress]:
        """The open file and its gzip stream (text formats, between _open and _finish)."""
        assert self._raw is not None and self._gzip is not None
        return self._raw, self._gzip

    def _finish(self) -> None:
        if self._tmp is None:
            return
        if self.fmt == "parquet":
            assert self._parquet is not None  # opened by the file's first rows
            self._parquet.close()
            self._parquet = None
        else:
            raw, gz = self._text_file()
            raw.write(gz.flush())
            raw.close()
            self._raw = self._gzip = None
        final = self._path(self._index)
        os.replace(self._tmp, final)
        self._tmp = None
        self.files.append(final)


def _string_bytes(lines: pa.Array) -> memoryview:
    """The concatenated text of a (sliced) string array, without copying it row by row."""
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset : lines.offset + len(lines) + 1]
    return memoryview(lines.buffers()[2])[int(offsets[0]) : int(offsets[-1])]


def _temp_name(path: str) -> str:
    head, tail = os.path.split(path)
    return os.path.join(head, f".{tail}.tmp")


_OUR_FILES = re.compile(r"^\.?part-\d{5}\.(parquet|csv\.gz|jsonl\.gz)(\.tmp)?$")


def _remove_old_event_files(events_dir: str) -> None:
    """A rerun with fewer files must not leave an earlier run's files beside the new ones."""
    for name in os.listdir(events_dir):
        if _OUR_FILES.match(name):
            _unlink(os.path.join(events_dir, name))


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
