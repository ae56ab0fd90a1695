"""Reading Wikidata entity JSON: the dump formats, splitting a dump into chunks that workers
read independently, and rendering statement values to short typed text.

Used by the facts stage (twiki/stages/facts.py); reads `wikidata-YYYYMMDD-all.json[.gz|.bz2]` or API
responses (`{"entities": {...}}`), writes nothing itself.

Splitting (so that N workers each read 1/N of a dump, never the whole of it):
- plain `.json`: byte ranges, each line owned by the chunk that holds the newline before it.
- `.gz`: Wikimedia's all.json.gz is a concatenation of gzip members (one per 200k-page batch of
  each of 8 dump shards: ~600 members for the full dump), so chunks start at member boundaries
  found by scanning for the gzip header and proven by decoding; a one-member gzip (made by hand
  with `gzip`) cannot be split and is read by one task.
- `.bz2`: Wikimedia's all.json.bz2 is made by lbzip2: one bz2 stream of ~900 kB blocks that
  start at arbitrary *bit* offsets. Chunks start at a block magic found by a bit-level scan;
  each block is decoded on its own by wrapping its bits in a one-block synthetic stream (header,
  the block, end-of-stream marker, and the block's own CRC as the stream CRC). This also works
  for multistream (pbzip2-style) files. bz2 decoding costs ~5x gz decoding: prefer the .gz.
"""

from __future__ import annotations

import bz2
import re
import reprlib
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InputError

# --------------------------------------------------------------------------------------------
# Values: render a statement's main value to (value_type, canonical value, text, extras).

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
JULIAN = "http://www.wikidata.org/entity/Q1985786"
ENTITY_PREFIX = "http://www.wikidata.org/entity/"
TIME_RE = re.compile(r"^([+-]?)(\d+)-(\d\d)-(\d\d)T")
ENTITY_TYPE_PREFIX = {"item": "Q", "property": "P", "lexeme": "L", "form": "L", "sense": "L"}

# The entity numbers the facts' columns hold: items (subjects, objects, units) in int64 ones,
# properties in int32 ones. Wikidata's are far below (Q1.3e8 and P1.3e4 in 2024): an id above
# them in a dump is a corrupt value, skipped and counted like any other (see qid_number).
MAX_ITEM_NUMBER = 2**63 - 1
MAX_PROPERTY_NUMBER = 2**31 - 1
# The time precisions Wikibase defines: 0 (a billion years) .. 14 (a second); see time_precision.
TIME_PRECISIONS = range(0, 15)


def ordinal(n: int) -> str:
    if 10 <= n % 100 <= 20:
        return f"{n}th"
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th') }"


def parse_time(value: str) -> tuple[int, int, int]:
    """(year, month, day) of a Wikibase time string, old (`+00000001952-...`) or new form.

    Years are as Wikidata writes them: -44 is 44 BCE (there is no year 0 in practice)."""
    m = TIME_RE.match(value)
    if not m:
        raise ValueError(f"not a Wikibase time: {value!r}")
    year = int(m.group(2))
    return (-year if m.group(1) == "-" else year), int(m.group(3)), int(m.group(4))


def time_period(year: int, precision: int) -> int:
    """The number of the period a year falls in at a coarse precision (8 and below), counted
    from 1 as Wikidata's own formatter does, without sign (BCE is the caller's): precision 8
    the decade's first year (1953 -> 1950), 7 the century (1901..2000 -> 20: `+1950` at
    century precision is the 20th century, `+1900` the 19th), 6 the millennium (1001..2000 ->
    2), 5 and below the number of 10^(9 - precision) years, rounded to the nearest and at
    least 1. render_time shows this number and time_key compares it, so two values share a
    key exactly when they render the same."""
    y = abs(year)
    if precision == 8:
        return y - y % 10
    if precision == 7:
        return max(1, -(-y // 100))
    if precision == 6:
        return max(1, -(-y // 1000))
    return max(1, round(y / 10 ** (9 - max(precision, 0))))


def render_time(value: str, precision: int) -> str:
    """A date at its precision: 11 '17 March 1952', 10 'March 1952', 9 '1952', 8 '1950s',
    7 '20th century', 6 '2nd millennium', <=5 '13798 million years'; ' BCE' when negative.
    Centuries and millennia are counted as time_period does (`+1950` and `+2000` at precision
    7 are the 20th century)."""
    year, month, day = parse_time(value)
    bce = " BCE" if year < 0 else ""
    y = abs(year)
    if precision >= 11 and month and day:
        return f"{day} {MONTHS[month - 1]} {y}{bce}"
    if precision >= 10 and month:
        return f"{MONTHS[month - 1]} {y}{bce}"
    if precision >= 9:
        return f"{y}{bce}"
    n = time_period(year, precision)
    if precision == 8:
        return f"{n}s{bce}"
    if precision == 7:
        return f"{ordinal(n)} century{bce}"
    if precision == 6:
        return f"{ordinal(n)} millennium{bce}"
    amount = n * 10 ** (9 - max(precision, 0))
    for scale, word in ((10**9, "billion"), (10**6, "million"), (10**3, "thousand")):
        if amount >= scale:
            return f"{amount / scale:g} {word} years{bce}"
    return f"{amount} years{bce}"


def time_precision(value: dict) -> int:
    """The precision of a Wikibase time value; ValueError for one Wikibase never writes (it
    would not fit the facts' int8 precision column, nor mean anything)."""
    precision = int(value["precision"])
    if precision not in TIME_PRECISIONS:
        raise ValueError(f"time precision {precision} is not one of Wikibase's "
                         f"{TIME_PRECISIONS.start}..{TIME_PRECISIONS.stop - 1}")
    return precision


def time_key(value: str, precision: int, calendar: str | None) -> str:
    """Canonical form of a time for comparing months: only the digits the precision keeps, so
    `+00000001952-03-11` (2015 dumps) and `+1952-03-11` (later dumps) are the same value.
    Coarser than a year, the key holds time_period's number, the one render_time shows:
    `1950s/8`, `20c/7` (the 20th century: +1901 .. +2000), `2m/6` (the 2nd millennium),
    `13798x1000000/3`; a leading '-' before the number for BCE. Two values share a key exactly
    when they render the same (with the calendar: `/julian`)."""
    year, month, day = parse_time(value)
    if precision >= 11:
        body = f"{year}-{month:02d}-{day:02d}"
    elif precision == 10:
        body = f"{year}-{month:02d}"
    elif precision == 9:
        body = f"{year}"
    else:
        sign = "-" if year < 0 else ""
        n = time_period(year, precision)
        suffix = {8: "s", 7: "c", 6: "m"}.get(precision, f"x{10 ** (9 - max(precision, 0))}")
        body = f"{sign}{n}{suffix}"
    return f"{body}/{precision}" + ("/julian" if calendar == JULIAN else "")


def normalize_amount(amount: str) -> str:
    """'+1105.690' -> '1105.69', '+429' -> '429', '-1.5' -> '-1.5'."""
    a = amount[1:] if amount.startswith("+") else amount
    if "." in a:
        a = a.rstrip("0").rstrip(".")
    return "0" if a in ("-0", "") else a


def unit_qid(unit: str | None) -> str | None:
    if not unit or unit == "1":
        return None
    return unit[len(ENTITY_PREFIX):] if unit.startswith(ENTITY_PREFIX) else unit


def qid_number(qid: str, largest: int = MAX_ITEM_NUMBER) -> int:
    """'Q42' -> 42 (and 'P31' -> 31, with `largest` MAX_PROPERTY_NUMBER for a property id: the
    column it goes to). ValueError for a number below 0 or above `largest`: no column holds it."""
    number = int(qid[1:])
    if not 0 <= number <= largest:
        raise ValueError(f"id {reprlib.repr(qid)} is out of range (0..{largest})")
    return number


def item_number(value: dict) -> int:
    """The item number of a wikibase-entityid value: its `numeric-id`, else its `id` (dumps
    have both since 2015). ValueError for a numeric-id that is not an integer in range."""
    number = value.get("numeric-id")
    if number is None:
        return qid_number(value["id"])
    if type(number) is not int or not 0 <= number <= MAX_ITEM_NUMBER:
        raise ValueError(f"numeric-id {reprlib.repr(number)} is not an item number "
                         f"(0..{MAX_ITEM_NUMBER})")
    return number


def text_value(value, what: str) -> str | None:
    """`value` when it is a string or None; a TypeError naming `what` otherwise (a label or a
    statement value that is a number or an object: no string column holds it)."""
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"{what} is {type(value).__name__} {reprlib.repr(value)}, not a string")


def id_numbers(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A column of entity ids 'Q42', 'P31' -> their numbers (int64), for sorting in id
    order."""
    return pc.cast(pc.utf8_slice_codeunits(col, 1), pa.int64())


def id_strings(col: pa.Array | pa.ChunkedArray, prefix: str = "Q") -> pa.Array:
    """A column of entity numbers 42 -> their ids 'Q42' (prefix 'P' for properties); a null
    stays null."""
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return pc.binary_join_element_wise(pa.scalar(prefix), pc.cast(col, pa.string()), "")


def _term(entity: dict, terms: str, lang: str) -> str | None:
    """The entity's `terms` ("labels" or "descriptions") value in `lang`, else the
    language-neutral `mul` one Wikidata added in 2024 (a TypeError when it is not a string)."""
    by_lang = entity.get(terms)
    if not by_lang or not isinstance(by_lang, dict):
        return None
    v = by_lang.get(lang) or by_lang.get("mul")
    return text_value(v.get("value"), terms[:-1]) if v else None


def label_of(entity: dict, lang: str) -> str | None:
    """English label, else the language-neutral `mul` label Wikidata added in 2024."""
    return _term(entity, "labels", lang)


def aliases_of(entity: dict, lang: str) -> list[str]:
    aliases = entity.get("aliases")
    if not aliases or not isinstance(aliases, dict):
        return []
    out = [text_value(a["value"], "alias") for a in aliases.get(lang) or () if a.get("value")]
    for a in aliases.get("mul") or ():
        if a.get("value") and a["value"] not in out:
            out.append(text_value(a["value"], "alias"))
    return out


def description_of(entity: dict, lang: str) -> str | None:
    return _term(entity, "descriptions", lang)


def sitelink_title(entity: dict, wiki: str) -> str | None:
    links = entity.get("sitelinks")
    if not links or not isinstance(links, dict):
        return None
    link = links.get(wiki)
    return text_value(link.get("title"), "sitelink title") if link else None


# --------------------------------------------------------------------------------------------
# Entities: the dump formats.

class DumpFormatError(InputError):
    """A file that is not a Wikidata JSON entity dump nor an API response."""


def check_entity(entity: dict, where: str) -> None:
    """Refuse the pre-2014 internal JSON (`"entity": ["item", 1]`, `"label"`, `"links"`)."""
    if "entity" in entity and "id" not in entity and ("label" in entity or "links" in entity):
        raise DumpFormatError(
            f"{where}: this is Wikidata's pre-2014 internal entity JSON (found 'entity', "
            f"'label', 'links' keys), not the JSON dump format; use a wikidata-YYYYMMDD-all.json "
            f"dump (2014-10 or later) or wbgetentities API responses")


def entities_of(obj) -> Iterator[dict]:
    """The entities of one parsed line or document: an entity, or an API response
    `{"entities": {...}}` (missing entities are dropped; redirects keep their target id)."""
    if isinstance(obj, dict):
        ents = obj.get("entities")
        if isinstance(ents, dict) and "id" not in obj:
            for key, e in ents.items():
                if isinstance(e, dict):
                    yield e
            return
        yield obj
    elif isinstance(obj, list):
        for e in obj:
            if isinstance(e, dict):
                yield e


# --------------------------------------------------------------------------------------------
# Chunks: a dump file cut into pieces that workers decode independently.

@dataclass(frozen=True)
class DumpChunk:
    index: int       # global order (files in order, then position): ties broken by it
    path: str
    codec: str       # "plain" | "gz" | "bz2" | "document"
    start: int       # where decoding starts: byte offset (plain, gz) or bit offset (bz2)
    end: int         # where the next chunk starts (same unit); -1: end of file
    first: bool      # the first chunk of its file (owns the file's first line)
    size: int        # compressed bytes covered (progress weight)


def codec_of(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".bz2"):
        return "bz2"
    if name.endswith(".gz"):
        return "gz"
    return "plain"


def _head(path: Path, codec: str, n: int = 1 << 16) -> bytes:
    """The first decompressed bytes of a file (format sniffing)."""
    try:
        if codec == "gz":
            d = zlib.decompressobj(31)
            with open(path, "rb") as f:
                return d.decompress(f.read(1 << 20), n)
        if codec == "bz2":
            with bz2.open(path, "rb") as f:
                return f.read(n)
        with open(path, "rb") as f:
            return f.read(n)
    except (OSError, EOFError, zlib.error) as e:
        raise InputError(f"{path.name}: truncated or corrupt {codec} data at the start of the "
                         f"file ({e}); delete it and download it again") from None


def sniff_format(path: Path) -> str:
    """'lines' (the dump format, or one entity / API response per line) or 'document' (one
    pretty-printed JSON document, e.g. a saved API response). Anything else is refused."""
    head = _head(path, codec_of(path)).lstrip()
    if not head:
        raise DumpFormatError(f"{path}: the file is empty")
    if head[:1] == b"<":
        raise DumpFormatError(
            f"{path.name}: this is XML (a wikidatawiki pages dump, whose entities are in "
            f"Wikidata's pre-2014 internal format); twiki needs the JSON entity dump "
            f"wikidata-YYYYMMDD-all.json.bz2 or .gz from dumps.wikimedia.org/wikidatawiki/entities/")
    if head[:1] == b"[":
        rest = head[1:].lstrip(b" \t\r")
        if rest[:1] == b"\n" or not rest:
            return "lines"
        return "document"  # a JSON array on one or several lines, small by nature
    if head[:1] == b"{":
        first = head.split(b"\n", 1)[0].rstrip().rstrip(b",")
        try:
            orjson.loads(first)
            return "lines"
        except orjson.JSONDecodeError:
            return "document"
    raise DumpFormatError(f"{path.name}: not a Wikidata JSON dump (starts with "
                          f"{head[:40]!r}); expected '[' then one entity per line")


# Gzip member header: magic, deflate, and no reserved flag bits.
_GZ_MAGIC = b"\x1f\x8b\x08"
BZ_BLOCK_MAGIC = 0x314159265359
BZ_EOS_MAGIC = 0x177245385090


def plan_chunks(paths: list[Path], chunk_bytes: int) -> list[DumpChunk]:
    """Cut the dump files into chunks of about `chunk_bytes` compressed bytes, each starting
    where it can be decoded on its own."""
    chunks: list[DumpChunk] = []
    for path in paths:
        fmt = sniff_format(path)
        codec = codec_of(path)
        size = path.stat().st_size
        if fmt == "document":
            starts = [0]
            codec = "document"
        elif codec == "plain":
            starts = list(range(0, size, chunk_bytes)) or [0]
        elif codec == "gz":
            starts = _gz_starts(path, size, chunk_bytes)
        else:
            starts = _bz2_starts(path, size, chunk_bytes)
        unit = 8 if codec == "bz2" else 1
        for i, s in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else -1
            nbytes = ((end if end >= 0 else size * unit) - s) // unit
            chunks.append(DumpChunk(len(chunks), str(path), codec, s, end, i == 0, nbytes))
    return chunks


def _gz_starts(path: Path, size: int, chunk_bytes: int) -> list[int]:
    starts = [0]
    with open(path, "rb") as f:
        target = chunk_bytes
        while target < size:
            found = _next_gz_member(f, target, size)
            if found is None:
                break
            if found > starts[-1]:
                starts.append(found)
            target = max(found + 1, starts[-1] + chunk_bytes)
    return starts


def _next_gz_member(f, pos: int, size: int, window: int = 1 << 22) -> int | None:
    """Offset of the first gzip member header at or after `pos` that decodes as one."""
    while pos < size:
        f.seek(pos)
        buf = f.read(window + 16)
        i = buf.find(_GZ_MAGIC)
        while i >= 0:
            if _gz_member_ok(f, pos + i):
                return pos + i
            i = buf.find(_GZ_MAGIC, i + 1)
        pos += window
    return None


def _gz_member_ok(f, offset: int, probe: int = 1 << 16) -> bool:
    """A candidate member start is real when 64 kB (or the whole member) decode from it to
    JSON-looking text; random bytes that look like a header fail within a few bytes."""
    f.seek(offset)
    data = f.read(1 << 20)
    if len(data) < 18 or data[3] & 0xE0:
        return False
    d = zlib.decompressobj(31)
    try:
        out = d.decompress(data, probe)
    except zlib.error:
        return False
    if not out:
        return False
    try:
        out.decode("utf-8", errors="strict") if d.eof else out[:-4].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return len(out) >= probe or d.eof


def _bz2_starts(path: Path, size: int, chunk_bytes: int) -> list[int]:
    with open(path, "rb") as f:
        if f.read(4)[:3] != b"BZh":
            raise InputError(f"{path.name}: not a bz2 file (no 'BZh' header)")
        scanner = _BitScanner(f, size)
        first = scanner.find(BZ_BLOCK_MAGIC, 32)
        if first is None:
            raise InputError(f"{path.name}: a bz2 file with no block: empty or truncated")
        starts = [first]
        target = chunk_bytes
        while target < size:
            found = scanner.find(BZ_BLOCK_MAGIC, target * 8)
            if found is None:
                break
            if found > starts[-1]:
                starts.append(found)
            target = max(found // 8 + 1, target + chunk_bytes)
    return starts


def _magic_patterns(magic: int) -> list[tuple[int, bytes, int, int, int, int]]:
    """For each bit shift s (0..7) of a 48-bit magic within a byte: the 5 or 6 bytes it fully
    covers, and the masks/values of the partial bytes around them."""
    pats = []
    for s in range(8):
        if s == 0:
            pats.append((0, magic.to_bytes(6, "big"), 0, 0, 0, 0))
            continue
        w = (magic << (8 - s)).to_bytes(7, "big")
        m0 = (1 << (8 - s)) - 1
        m6 = 0xFF ^ ((1 << (8 - s)) - 1)
        pats.append((s, w[1:6], m0, w[0], m6, w[6]))
    return pats


_PATTERNS = {BZ_BLOCK_MAGIC: _magic_patterns(BZ_BLOCK_MAGIC),
             BZ_EOS_MAGIC: _magic_patterns(BZ_EOS_MAGIC)}


def find_magic(buf: bytes, magic: int, start_bit: int, base_bit: int = 0,
               end_bit: int | None = None) -> int | None:
    """First bit offset in [start_bit, end_bit) (relative to base_bit = bit offset of buf[0])
    where the 48-bit `magic` starts, or None. The whole magic must lie inside buf."""
    best = None
    rel = start_bit - base_bit
    # only bytes that can hold a magic starting before end_bit are searched
    stop = len(buf) if end_bit is None else min(len(buf), (end_bit - base_bit) // 8 + 7)
    for s, mid, m0, v0, m6, v6 in _PATTERNS[magic]:
        if s == 0:
            i = buf.find(mid, max(0, -(-rel // 8)), stop)
            if i >= 0 and (best is None or i * 8 < best):
                best = i * 8
            continue
        # the magic starts in byte i-1 at bit s; its full bytes are buf[i:i+5]
        i = buf.find(mid, max(1, (rel - s) // 8 + 1), stop)
        while i >= 0:
            bit = (i - 1) * 8 + s
            if best is not None and bit >= best:
                break
            if (i + 5 < len(buf) and bit >= rel and (buf[i - 1] & m0) == v0
                    and (buf[i + 5] & m6) == v6):
                best = bit
                break
            i = buf.find(mid, i + 1, stop)
    if best is None or (end_bit is not None and best + base_bit >= end_bit):
        return None
    return best + base_bit


def bits_to_bytes(buf: bytes, base_bit: int, a: int, b: int) -> tuple[int, int]:
    """The bits [a, b) of a buffer that starts at bit base_bit, as (int, nbits)."""
    lo = (a - base_bit) // 8
    hi = -(-(b - base_bit) // 8)
    v = int.from_bytes(buf[lo:hi], "big")
    trailing = (hi - lo) * 8 - ((b - base_bit) - lo * 8)
    n = b - a
    return (v >> trailing) & ((1 << n) - 1), n


def one_block_stream(bits: int, nbits: int, crc: int) -> bytes:
    """A complete bz2 stream made of one block's bits: 'BZh9', the block, end-of-stream magic,
    stream CRC (= the block CRC for a one-block stream), padding to a byte."""
    v = (((bits << 48) | BZ_EOS_MAGIC) << 32) | crc
    n = nbits + 80
    pad = (-n) % 8
    return b"BZh9" + (v << pad).to_bytes((n + pad) // 8, "big")


class _BitScanner:
    """A sliding window over a file for finding bz2 magics at bit offsets."""

    def __init__(self, f, size: int, window: int = 1 << 22):
        self.f, self.size, self.window = f, size, window
        self.base = 0   # byte offset of buf[0]
        self.buf = b""

    def load(self, byte_start: int, byte_end: int) -> None:
        """Make sure bytes [byte_start, byte_end) are in the window (as far as the file goes)."""
        byte_end = min(byte_end, self.size)
        if byte_start >= self.base and byte_end <= self.base + len(self.buf):
            return
        self.f.seek(byte_start)
        self.buf = self.f.read(max(byte_end - byte_start, self.window))
        self.base = byte_start

    def find(self, magic: int, start_bit: int, limit_bit: int | None = None,
             step: int = 1 << 18) -> int | None:
        """First bit >= start_bit where `magic` starts (before limit_bit when given),
        searched in steps of `step` bytes (a block is ~100-250 kB compressed)."""
        pos = start_bit // 8
        while pos < self.size:
            hi = min(pos + step, self.size)
            if limit_bit is not None:
                hi = min(hi, -(-limit_bit // 8) + 8)
            self.load(pos, hi + 8)
            end = hi * 8 if limit_bit is None else min(hi * 8, limit_bit)
            hit = find_magic(self.buf, magic, max(start_bit, pos * 8), self.base * 8, end)
            if hit is not None:
                return hit
            if hi >= self.size or (limit_bit is not None and end >= limit_bit):
                return None
            pos = hi
        return None

    def bits(self, a: int, b: int) -> tuple[int, int]:
        self.load(a // 8, -(-b // 8))
        return bits_to_bytes(self.buf, self.base * 8, a, b)


# --------------------------------------------------------------------------------------------
# Decoding a chunk: decompressed pieces, each flagged inside/outside the chunk's own range.

def iter_chunk_pieces(chunk: DumpChunk, read_size: int = 1 << 22) -> Iterator[tuple[bytes, bool]]:
    """(bytes, inside) pieces of a chunk's decompressed text. `inside` is True while the
    compressed data comes from before the next chunk's start; pieces after it only finish the
    chunk's last line (the consumer stops reading as soon as it has)."""
    path = Path(chunk.path)
    if chunk.codec == "plain":
        yield from _plain_pieces(path, chunk, read_size)
    elif chunk.codec == "gz":
        yield from _gz_pieces(path, chunk, read_size)
    elif chunk.codec == "bz2":
        yield from _bz2_pieces(path, chunk)
    else:
        raise ValueError(chunk.codec)


def _plain_pieces(path: Path, chunk: DumpChunk, read_size: int):
    with open(path, "rb") as f:
        f.seek(chunk.start)
        pos = chunk.start
        end = chunk.end if chunk.end >= 0 else None
        while True:
            # past the end only the chunk's last line is wanted: read in small pieces
            n = (1 << 16) if end is not None and pos >= end else (
                read_size if end is None else min(read_size, end - pos))
            data = f.read(n)
            if not data:
                return
            inside = end is None or pos < end
            pos += len(data)
            yield data, inside


def _gz_pieces(path: Path, chunk: DumpChunk, read_size: int, max_out: int = 1 << 23):
    end = chunk.end

    def truncated(at: int) -> InputError:
        return InputError(f"{path.name}: truncated gzip data: the member starting at byte {at} "
                          f"ends early; delete the file and download it again")

    with open(path, "rb") as f:
        f.seek(chunk.start)
        member_start = chunk.start
        consumed = 0            # compressed bytes of the current member consumed so far
        d = zlib.decompressobj(31)
        pending = f.read(read_size)
        if not pending:
            raise truncated(member_start)
        while True:
            inside = end < 0 or member_start < end
            try:
                out = d.decompress(pending, max_out)
            except zlib.error as e:
                raise InputError(f"{path.name}: corrupt gzip data in the member starting at "
                                 f"byte {member_start} ({e}); delete the file and download "
                                 f"it again") from None
            consumed += len(pending) - len(d.unconsumed_tail) - len(d.unused_data)
            if out:
                yield out, inside
            if not d.eof:
                pending = d.unconsumed_tail
                if not pending:
                    pending = f.read(read_size)
                    if not pending:
                        tail = d.flush()
                        if tail:
                            yield tail, inside
                        raise truncated(member_start)
                continue
            member_start += consumed
            consumed = 0
            if end >= 0 and inside and member_start > end:
                raise InputError(f"{path.name}: the planned chunk boundary at byte {end} is "
                                 f"not a gzip member start (a false header match); rerun with "
                                 f"another --chunk-mb")
            pending = d.unused_data or f.read(read_size)
            if not pending:
                return
            if pending[:2] != b"\x1f\x8b":
                rest = pending + f.read()
                if not rest.strip(b"\x00"):
                    return  # zero padding after the last member, which gzip tolerates
                raise InputError(f"{path.name}: unexpected bytes after the gzip member ending "
                                 f"at byte {member_start}: not gzip data from there on")
            d = zlib.decompressobj(31)


def _bz2_pieces(path: Path, chunk: DumpChunk):
    size = path.stat().st_size
    end = chunk.end
    with open(path, "rb") as f:
        sc = _BitScanner(f, size)
        p = chunk.start
        while p is not None:
            nxt = sc.find(BZ_BLOCK_MAGIC, p + 48)
            limit = nxt if nxt is not None else size * 8
            eos = sc.find(BZ_EOS_MAGIC, p + 48, limit)
            if eos is None and nxt is None:
                raise InputError(f"{path.name}: truncated bz2 data: the block at bit {p} has "
                                 f"no end (no next block, no end-of-stream marker); delete the "
                                 f"file and download it again")
            block_end = eos if eos is not None else nxt
            crc, _ = sc.bits(p + 48, p + 80)
            bits, n = sc.bits(p, block_end)
            try:
                out = bz2.decompress(one_block_stream(bits, n, crc))
            except (OSError, ValueError, EOFError) as e:
                raise InputError(f"{path.name}: corrupt bz2 block at bit {p} (byte {p // 8}) "
                                 f"({e}); delete the file and download it again") from None
            yield out, end < 0 or p < end
            if eos is not None and nxt is None:
                # the end-of-stream marker must be followed by its 32-bit CRC
                if (eos + 80 + 7) // 8 > size:
                    raise InputError(f"{path.name}: truncated bz2 data after the last block")
            p = nxt


# The longest dump line read, 64 MiB: the largest Wikidata entities are a few MB of JSON.
MAX_LINE_BYTES = 64 * 2**20


def iter_owned_lines(pieces: Iterator[tuple[bytes, bool]], first: bool,
                     max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[bytes | None]:
    """The lines a chunk owns: those whose preceding newline lies inside the chunk (the first
    chunk of a file also owns the file's first line). Every line of a file is owned by exactly
    one chunk, wherever the chunk boundaries fall. A line over `max_line_bytes` is yielded as
    None: its pieces are dropped as they arrive, so it is never held whole."""
    owned = first
    partial: list[bytes] = []
    partial_bytes = 0

    def line_ending_with(rest: bytes) -> bytes | None:
        if partial_bytes + len(rest) > max_line_bytes:
            return None
        return b"".join(partial) + rest if partial else rest

    for data, inside in pieces:
        parts = data.split(b"\n")
        if len(parts) == 1:
            partial_bytes += len(data)
            if partial_bytes <= max_line_bytes:
                partial.append(data)
            else:
                partial.clear()   # over the cap: only the count is kept from here on
            continue
        if owned:
            yield line_ending_with(parts[0])
        partial, partial_bytes = [], 0
        if not inside:
            return  # the line after a newline outside the chunk belongs to the next chunk
        owned = True
        for line in parts[1:-1]:
            yield line if len(line) <= max_line_bytes else None
        partial.append(parts[-1])
        partial_bytes = len(parts[-1])
    if owned and partial_bytes:
        yield line_ending_with(b"")


def read_document(path: Path, max_bytes: int = 1 << 30) -> object:
    """A whole-file JSON document (a saved API response); only for small files."""
    size = path.stat().st_size
    if size > max_bytes:
        raise InputError(f"{path.name}: a {size / 1e6:.0f} MB single JSON document; only the "
                         f"line-per-entity dump format is read in pieces")
    codec = codec_of(path)
    try:
        if codec == "gz":
            import gzip
            raw = gzip.decompress(path.read_bytes())
        elif codec == "bz2":
            raw = bz2.decompress(path.read_bytes())
        else:
            raw = path.read_bytes()
        return orjson.loads(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise InputError(f"{path.name}: truncated or corrupt {codec} data ({e})") from None
    except orjson.JSONDecodeError as e:
        raise DumpFormatError(f"{path.name}: not valid JSON ({e})") from None
