//! The fast reader of `stowage plan`: documents are deserialized straight from the text (no
//! `serde_json::Value` tree in between), and Pods keep only the fields the provisioner reads
//! ([`LeanPod`], read through `stowage_solver::convert::PodView` by the same conversion as a
//! `k8s_openapi` Pod, which is never built); env, volumes, probes, images and every other field
//! are skipped without being built. Other kinds (Nodes, NodePools,
//! DaemonSets, NodeClaims: a handful in a dump) are kept as `Value`s for the exact reader.
//!
//! Key decision: this reader only ever says "these are the objects" or "not mine". Anything
//! unusual (a document without a kind, a Pod whose `apiVersion` is not `v1`, a List without
//! items, a Pod without containers, any syntax or type error) makes the caller read the whole
//! file again with the exact reader (`Value` then the full `k8s_openapi` types), which names the
//! document and the field. So every error message is the exact reader's; the fast reader only
//! has to agree with it on input both accept.
//!
//! **Invariant:** [`LeanSpec`], [`LeanMeta`], [`LeanContainer`] and [`LeanStatus`] carry every
//! Pod field the provisioner reads (every field of `PodView` but the uid and creation time,
//! which `plan` does not use). A field read there and not here would be silently dropped;
//! `tests::the_lean_view_converts_as_the_full_pod` and
//! `plan::tests::the_fast_reader_agrees_with_the_exact_one` compare both on pods using each.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use stowage_solver::convert::{ContainerView, PodView, SpecView, StatusView};

/// One document (or List item) as the fast reader read it; a Pod as `P` (the `k8s_openapi` Pod,
/// or what a [`Convert`] made of it on the thread that read it).
#[derive(Debug, PartialEq)]
pub enum Item<P = Box<core::Pod>> {
    /// A YAML document that is empty or `null`.
    Null,
    Pod(P),
    /// The items of a List kind (`List`, `PodList`, ...).
    List(Vec<Item<P>>),
    /// Any other object, for the exact reader.
    Other(serde_json::Value),
}

impl<P> Item<P> {
    /// The item with every Pod (in Lists too) made into `f(pod)`, in order.
    pub fn map<Q>(self, f: &mut impl FnMut(P) -> Q) -> Item<Q> {
        match self {
            Item::Null => Item::Null,
            Item::Pod(p) => Item::Pod(f(p)),
            Item::List(items) => Item::List(items.into_iter().map(|i| i.map(f)).collect()),
            Item::Other(v) => Item::Other(v),
        }
    }
}

/// What the reader's threads make of each Pod they read, right after reading it: the work is
/// spread over the cores with the reading, and the lean Pod is dropped on the thread that built
/// it, whose memory it reuses, instead of living until the caller converts it.
pub trait Convert: Sync {
    /// What a Pod becomes.
    type Pod: Send;
    /// Each reading thread's own scratch state (e.g. an interner), made with `Default`.
    type Scratch: Default;

    fn pod(&self, scratch: &mut Self::Scratch, pod: Box<LeanPod>) -> Self::Pod;
}

/// The [`Convert`] that makes each Pod a `k8s_openapi` Pod (with only the fields read).
pub struct Keep;

impl Convert for Keep {
    type Pod = Box<core::Pod>;
    type Scratch = ();

    fn pod(&self, _: &mut (), pod: Box<LeanPod>) -> Box<core::Pod> {
        Box::new(pod.into_pod())
    }
}

/// A document as the parser reads it, each Pod in its lean form.
type Raw = Item<Box<LeanPod>>;

/// `items` with each Pod converted by `convert` (on this thread, with its own scratch state).
fn convert_all<C: Convert>(items: Vec<Raw>, convert: &C) -> Vec<Item<C::Pod>> {
    let mut scratch = C::Scratch::default();
    let mut f = |p| convert.pod(&mut scratch, p);
    items.into_iter().map(|i| i.map(&mut f)).collect()
}

/// The fast reader declined the document: the caller reads the file with the exact reader.
const DECLINE: &str = "stowage plan: not for the fast reader";

fn decline<E: de::Error>() -> E {
    E::custom(DECLINE)
}

const LIST_KINDS: [&str; 6] = [
    "List",
    "PodList",
    "NodeList",
    "DaemonSetList",
    "NodePoolList",
    "NodeClaimList",
];

/// The documents of a JSON text (one object, or an array of objects as documents), or `None`
/// when the exact reader must read it.
pub fn json_documents(text: &str) -> Option<Vec<Item>> {
    json_documents_converted(text, &Keep)
}

/// [`json_documents`] with each Pod made into what `convert` makes of it.
pub fn json_documents_converted<C: Convert>(text: &str, convert: &C) -> Option<Vec<Item<C::Pod>>> {
    if text.len() >= PIECE_BYTES {
        return stream::documents(text.as_bytes(), threads(), PIECE_BYTES, convert);
    }
    json_sequential(text).map(|docs| convert_all(docs, convert))
}

/// The documents of a JSON file (or any byte stream), read in pieces that are parsed as they
/// arrive, or `None` when the exact reader must read it (also on a read error: the exact reader
/// reads the file again and names the error).
pub fn json_reader(reader: impl Read) -> Option<Vec<Item>> {
    json_reader_converted(reader, &Keep)
}

/// [`json_reader`] with each Pod made into what `convert` makes of it, on the thread that
/// parsed it.
pub fn json_reader_converted<C: Convert>(
    reader: impl Read,
    convert: &C,
) -> Option<Vec<Item<C::Pod>>> {
    stream::documents(reader, threads(), PIECE_BYTES, convert)
}

/// Whether a file's text starts like JSON (`{` or `[` after white space); the file is rewound.
pub fn starts_like_json(file: &mut (impl Read + std::io::Seek)) -> std::io::Result<bool> {
    let mut buf = [0u8; 512];
    let first = loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break None;
        }
        if let Some(b) = buf[..n].iter().find(|b| !b.is_ascii_whitespace()) {
            break Some(*b);
        }
    };
    file.rewind()?;
    Ok(matches!(first, Some(b'{' | b'[')))
}

/// [`json_reader`] with `threads` parsing threads and pieces of about `piece_bytes` (for
/// benchmarks).
pub fn json_reader_with<C: Convert>(
    reader: impl Read,
    threads: usize,
    piece_bytes: usize,
    convert: &C,
) -> Option<Vec<Item<C::Pod>>> {
    stream::documents(reader, threads, piece_bytes, convert)
}

/// The threads that parse pieces: one per core.
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The size of one piece of a large JSON List: the file is read into a few buffers of this size
/// that are reused (a fresh buffer as large as the file costs a page fault per 4 KiB).
const PIECE_BYTES: usize = 4 << 20;

fn json_sequential(text: &str) -> Option<Vec<Raw>> {
    let mut de = serde_json::Deserializer::from_str(text);
    let docs = Documents.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(docs)
}

/// Reading one large pretty-printed JSON List (`kubectl get -o json`) in pieces, parsed on
/// several threads while the rest is read.
///
/// The text is cut between two items of the List (or of a top-level array): where a line holds
/// only `{` at the items' indentation and the line before ends with `,`. A raw newline is never
/// inside a JSON string, so the `{` is structural and starts an element of some array; each
/// piece is then read strictly on its own, and the pieces only fit together when every cut is
/// between items of the top-level items array: the first piece (`text[..cut] + "]}"`) must close
/// with `items` as its last field, every middle piece (`"[" + piece + "]"`) must be a complete
/// array, and the last (`"[" + text[cut..]`) must close the array and then the document. Any
/// other text (compact JSON, a cut inside a nested array) fails one of these and is read whole
/// on one thread, so the result is the sequential reader's or nothing.
///
/// Pieces are cut as the text is read: the reader fills a buffer of about [`PIECE_BYTES`], cuts
/// it at its last item boundary, hands it to a parsing thread and starts the next buffer with the
/// item it cut off. A handful of buffers circulate between the reader and the parsers, so the
/// memory read into is touched once and the file is never held whole.
mod stream {
    use std::io::Read;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Mutex, mpsc};

    use serde::Deserialize;
    use serde::de::Deserializer as _;

    use super::{Convert, Documents, Head, Item, Piece, Raw, convert_all, join, json_sequential};
    use serde::de::DeserializeSeed as _;

    /// Where a piece lies in the text, which says what must be around it.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Part {
        First,
        Middle,
        Last,
    }

    struct Job {
        index: usize,
        part: Part,
        buf: Vec<u8>,
    }

    /// The text's shape, from its first lines.
    #[derive(Clone, Copy)]
    struct Layout {
        /// A List object (else a top-level array).
        object: bool,
        /// The indentation of the items' `{`.
        level: usize,
    }

    impl Layout {
        fn of(text: &[u8]) -> Option<Layout> {
            let object = match text.iter().find(|b| !b.is_ascii_whitespace()) {
                Some(b'{') => true,
                Some(b'[') => false,
                _ => return None,
            };
            // The indentation unit: that of the second line.
            let second = text.iter().position(|b| *b == b'\n')? + 1;
            let unit = text[second..].iter().take_while(|b| **b == b' ').count();
            if unit == 0 {
                return None;
            }
            let level = if object { 2 * unit } else { unit };
            Some(Layout { object, level })
        }
    }

    pub(super) fn documents<C: Convert>(
        mut reader: impl Read,
        workers: usize,
        piece_bytes: usize,
        convert: &C,
    ) -> Option<Vec<Item<C::Pod>>> {
        let piece_bytes = piece_bytes.max(1);
        let mut first = Vec::with_capacity(piece_bytes + piece_bytes / 4);
        if fill(&mut reader, &mut first, piece_bytes)? {
            return whole(&first, convert);
        }
        let Some(layout) = Layout::of(&first) else {
            reader.read_to_end(&mut first).ok()?;
            return whole(&first, convert);
        };
        let workers = workers.max(1);
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let job_rx = Mutex::new(job_rx);
        let (free, free_rx) = mpsc::channel::<Vec<u8>>();
        let results: Mutex<Vec<Option<Piece<C::Pod>>>> = Mutex::new(Vec::new());
        let failed = AtomicBool::new(false);
        let mut produced = None;
        std::thread::scope(|scope| {
            for _ in 0..workers {
                let free = free.clone();
                let (job_rx, results, failed) = (&job_rx, &results, &failed);
                scope.spawn(move || {
                    work(job_rx, &free, results, failed, layout.object, convert);
                });
            }
            drop(free);
            produced = produce(
                reader,
                first,
                layout,
                piece_bytes,
                workers + 2,
                jobs,
                &free_rx,
                &failed,
            );
            if produced.is_none() {
                failed.store(true, Ordering::Relaxed);
            }
        });
        let n = match produced? {
            Produced::Whole(buf) => return whole(&buf, convert),
            Produced::Pieces(n) => n,
        };
        if failed.load(Ordering::Relaxed) {
            return None;
        }
        let results = results.into_inner().ok()?;
        if results.len() != n {
            return None;
        }
        join(results, layout.object)
    }

    /// What the reader did: found no cut (the whole text, for the sequential reader), or sent
    /// this many pieces.
    enum Produced {
        Whole(Vec<u8>),
        Pieces(usize),
    }

    /// Reads `buf` up to `target` bytes; true at the end of the text.
    fn fill(reader: &mut impl Read, buf: &mut Vec<u8>, target: usize) -> Option<bool> {
        let want = target.saturating_sub(buf.len());
        if want == 0 {
            return Some(false);
        }
        buf.reserve(want);
        let n = reader.by_ref().take(want as u64).read_to_end(buf).ok()?;
        Some(n < want)
    }

    fn whole<C: Convert>(text: &[u8], convert: &C) -> Option<Vec<Item<C::Pod>>> {
        let docs = json_sequential(std::str::from_utf8(text).ok()?)?;
        Some(convert_all(docs, convert))
    }

    /// The reader's side: fills buffers, cuts them and sends the pieces to the parsers.
    #[allow(clippy::too_many_arguments)]
    fn produce(
        mut reader: impl Read,
        first: Vec<u8>,
        layout: Layout,
        piece_bytes: usize,
        max_buffers: usize,
        jobs: mpsc::Sender<Job>,
        free: &mpsc::Receiver<Vec<u8>>,
        failed: &AtomicBool,
    ) -> Option<Produced> {
        let mut buf = first;
        let mut part = Part::First;
        let mut index = 0;
        let mut buffers = 1;
        let mut eof = false;
        // Where the search for a cut starts (the piece's own text; the bytes before were
        // searched already).
        let mut searched = 0;
        loop {
            if failed.load(Ordering::Relaxed) {
                return Some(Produced::Pieces(index));
            }
            let floor = if part == Part::First { 0 } else { 1 };
            let cut = if eof {
                None
            } else {
                last_cut(&buf, searched.max(floor), floor, layout.level)
            };
            let Some((comma, brace)) = cut else {
                if eof {
                    if part == Part::First {
                        return Some(Produced::Whole(buf));
                    }
                    jobs.send(Job {
                        index,
                        part: Part::Last,
                        buf,
                    })
                    .ok()?;
                    return Some(Produced::Pieces(index + 1));
                }
                // No item ends in this buffer: read more into it.
                searched = buf.len().saturating_sub(layout.level + 2);
                let target = buf.len() + piece_bytes;
                eof = fill(&mut reader, &mut buf, target)?;
                continue;
            };
            let mut next = if buffers < max_buffers {
                buffers += 1;
                Vec::with_capacity(piece_bytes + piece_bytes / 4)
            } else {
                free.recv().ok()?
            };
            next.clear();
            next.push(b'[');
            next.extend_from_slice(&buf[brace..]);
            buf.truncate(comma);
            buf.extend_from_slice(if part == Part::First && layout.object {
                b"]}"
            } else {
                b"]"
            });
            jobs.send(Job { index, part, buf }).ok()?;
            index += 1;
            part = Part::Middle;
            buf = next;
            searched = buf.len().saturating_sub(layout.level + 2);
            eof = fill(&mut reader, &mut buf, piece_bytes)?;
        }
    }

    /// The last cut in `text` whose line starts at or after `from` (and whose comma is at or
    /// after `floor`): (the comma ending the item before, the `{` starting the next one at
    /// indentation `level`).
    fn last_cut(text: &[u8], from: usize, floor: usize, level: usize) -> Option<(usize, usize)> {
        let mut end = text.len();
        while let Some(newline) = text[from.min(end)..end].iter().rposition(|b| *b == b'\n') {
            let newline = from.min(end) + newline;
            let line = newline + 1;
            let rest = &text[line..];
            if rest.len() > level
                && rest[..level].iter().all(|b| *b == b' ')
                && rest[level] == b'{'
                && let Some(before) = text[floor..newline]
                    .iter()
                    .rposition(|b| !b.is_ascii_whitespace())
                && text[floor + before] == b','
            {
                return Some((floor + before, line + level));
            }
            end = newline;
        }
        None
    }

    /// The parsers' side: parse pieces (each Pod converted as soon as its piece is read) until
    /// the reader is done, and hand the buffers back.
    fn work<C: Convert>(
        jobs: &Mutex<mpsc::Receiver<Job>>,
        free: &mpsc::Sender<Vec<u8>>,
        results: &Mutex<Vec<Option<Piece<C::Pod>>>>,
        failed: &AtomicBool,
        object: bool,
        convert: &C,
    ) {
        let mut scratch = C::Scratch::default();
        loop {
            let job = match jobs.lock() {
                Ok(rx) => rx.recv(),
                Err(_) => return,
            };
            let Ok(job) = job else {
                return;
            };
            let mut buf = job.buf;
            let piece = if failed.load(Ordering::Relaxed) {
                None
            } else {
                make_room(buf.len() * 2);
                squeeze_indentation(&mut buf);
                read_piece(&buf, job.part, object)
            };
            let _ = free.send(buf);
            let piece = piece.map(|p| p.convert(&mut |pod| convert.pod(&mut scratch, pod)));
            let stored = match (piece, results.lock()) {
                (Some(p), Ok(mut r)) => {
                    if r.len() <= job.index {
                        r.resize_with(job.index + 1, || None);
                    }
                    r[job.index] = Some(p);
                    true
                }
                _ => false,
            };
            if !stored {
                failed.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Drops the indentation of every line in place: each newline followed by spaces becomes
    /// the newline alone.
    ///
    /// Two thirds of a kubectl dump are indentation (4 spaces per level), which the JSON parser
    /// would otherwise step over one byte at a time. This changes neither what the text means
    /// nor whether it is valid JSON: a raw newline is never inside a string (a string holding one
    /// is invalid, and stays invalid with the same newline), so the spaces removed lie between
    /// two tokens, and one whitespace byte is left between them, which separates them as the run
    /// did. Only ASCII bytes are removed, so valid UTF-8 stays valid and invalid stays invalid.
    pub(super) fn squeeze_indentation(buf: &mut Vec<u8>) {
        const SPACES: [u8; 8] = [b' '; 8];
        const ONES: u64 = u64::from_ne_bytes([1; 8]);
        const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
        const NEWLINES: u64 = u64::from_ne_bytes([b'\n'; 8]);
        let len = buf.len();
        let (mut read, mut write) = (0, 0);
        while read < len {
            // Eight bytes at a time while they hold no newline (a word with a zero byte after
            // the XOR; the test has no false positives).
            while read + 8 <= len {
                let mut word = [0u8; 8];
                word.copy_from_slice(&buf[read..read + 8]);
                let x = u64::from_ne_bytes(word) ^ NEWLINES;
                if x.wrapping_sub(ONES) & !x & HIGHS != 0 {
                    break;
                }
                buf[write..write + 8].copy_from_slice(&word);
                read += 8;
                write += 8;
            }
            // Then byte by byte up to the newline (within the next eight bytes) or the end.
            let mut newline = false;
            while read < len && !newline {
                let b = buf[read];
                buf[write] = b;
                read += 1;
                write += 1;
                newline = b == b'\n';
            }
            // The next line's indentation.
            while read + 8 <= len && buf[read..read + 8] == SPACES {
                read += 8;
            }
            while read < len && buf[read] == b' ' {
                read += 1;
            }
        }
        buf.truncate(write);
    }

    /// Makes the calling thread's heap hold `bytes` more before a piece's objects are built.
    ///
    /// glibc grows the heap of a thread other than the main one by exactly what each allocation
    /// lacks, an `mprotect` call per page or so: parsing a 496 MB dump made 134,000 of them, a
    /// quarter of the parse's CPU time. Allocating and freeing one block of the piece's expected
    /// size grows the heap once; the objects then fill it. The first call raises glibc's
    /// thresholds (freeing a 31 MiB block that was mapped on its own makes blocks below that
    /// size come from the heap, and a heap keep up to twice that free). Other allocators just
    /// allocate and free.
    fn make_room(bytes: usize) {
        static RAISE: std::sync::Once = std::sync::Once::new();
        RAISE.call_once(|| {
            let block = vec![0u8; 31 << 20];
            std::hint::black_box(block.as_ptr());
        });
        let block = Vec::<u8>::with_capacity(bytes);
        std::hint::black_box(block.as_ptr());
    }

    /// One piece, with the brackets the reader put around it (`"[" + ... + "]"`; the first
    /// piece of a List ends in `"]}"`, the last has no `]` of its own).
    fn read_piece(buf: &[u8], part: Part, object: bool) -> Option<Piece> {
        let text = std::str::from_utf8(buf).ok()?;
        match part {
            Part::First if object => {
                let mut de = serde_json::Deserializer::from_str(text);
                let h = de
                    .deserialize_map(Head {
                        last_is_items: true,
                    })
                    .ok()?;
                de.end().ok()?;
                Some(h)
            }
            Part::First => {
                let mut de = serde_json::Deserializer::from_str(text);
                let items = Documents.deserialize(&mut de).ok()?;
                de.end().ok()?;
                Some(Piece::items(items))
            }
            Part::Middle => {
                let mut de = serde_json::Deserializer::from_str(text);
                let items = Vec::<Raw>::deserialize(&mut de).ok()?;
                de.end().ok()?;
                Some(Piece::items(items))
            }
            Part::Last => read_last(text, object),
        }
    }

    fn read_last(tail: &str, object: bool) -> Option<Piece> {
        let mut stream = serde_json::Deserializer::from_str(tail).into_iter::<Vec<Raw>>();
        let items = stream.next()?.ok()?;
        let rest = tail[stream.byte_offset()..].trim_start();
        if !object {
            return rest.is_empty().then_some(Piece::items(items));
        }
        // The document's fields after the items array.
        let fields = if let Some(more) = rest.strip_prefix(',') {
            format!("{{{more}")
        } else if rest.starts_with('}') {
            rest.to_string()
        } else {
            return None;
        };
        let mut de = serde_json::Deserializer::from_str(&fields);
        let h = de
            .deserialize_map(Head {
                last_is_items: false,
            })
            .ok()?;
        de.end().ok()?;
        h.items.is_empty().then_some(Piece {
            kind: h.kind,
            items,
            keys: h.keys,
        })
    }
}

/// What one piece holds: items (or documents) and, for the first and last piece of a
/// List, the kind when it is there.
struct Piece<P = Box<LeanPod>> {
    kind: Option<String>,
    items: Vec<Item<P>>,
    /// The List's own fields in this piece (none in a middle piece).
    keys: Vec<String>,
}

impl Piece {
    fn items(items: Vec<Raw>) -> Piece {
        Piece {
            kind: None,
            items,
            keys: Vec::new(),
        }
    }

    /// The piece with each Pod made into `f(pod)`.
    fn convert<Q>(self, f: &mut impl FnMut(Box<LeanPod>) -> Q) -> Piece<Q> {
        Piece {
            kind: self.kind,
            items: self.items.into_iter().map(|i| i.map(f)).collect(),
            keys: self.keys,
        }
    }
}

/// The items of the pieces of one List (or top-level array) in order, or `None` when they do
/// not fit together: a List's kind must be a List kind, and no field of the List may be both
/// before and after the items (the exact reader decides what a duplicate means).
fn join<P>(
    pieces: impl IntoIterator<Item = Option<Piece<P>>>,
    object: bool,
) -> Option<Vec<Item<P>>> {
    let mut kind = None;
    let mut keys: Vec<String> = Vec::new();
    let mut items = Vec::new();
    for piece in pieces {
        let piece = piece?;
        if piece.keys.iter().any(|k| keys.contains(k)) {
            return None;
        }
        keys.extend(piece.keys);
        kind = kind.or(piece.kind);
        items.extend(piece.items);
    }
    if !object {
        return Some(items);
    }
    if !LIST_KINDS.contains(&kind?.as_str()) {
        return None;
    }
    Some(vec![Item::List(items)])
}

/// The List's own fields around the items: in the first piece the items must be the last
/// field (the cut is in them); after them there must be none.
struct Head {
    last_is_items: bool,
}

impl<'de> Visitor<'de> for Head {
    type Value = Piece;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a List")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Piece, A::Error> {
        let mut kind = None;
        let mut items = None;
        let mut keys: Vec<String> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "kind" => kind = Some(map.next_value::<String>()?),
                "items" if self.last_is_items => items = Some(map.next_value::<Vec<Raw>>()?),
                "items" => return Err(de::Error::custom("items after the items")),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            keys.push(key);
        }
        let last = keys.last().map(String::as_str);
        if self.last_is_items && (last != Some("items") || items.is_none()) {
            return Err(de::Error::custom("the cut is not in the items"));
        }
        Ok(Piece {
            kind,
            items: items.unwrap_or_default(),
            keys,
        })
    }
}

/// The YAML reader's options, with limits sized for whole-cluster dumps: at most
/// `max_documents` documents and `max_bytes` of text.
pub fn yaml_options(max_documents: usize, max_bytes: usize) -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_documents = max_documents;
    budget.max_nodes = 200_000_000;
    budget.max_events = 400_000_000;
    budget.max_total_scalar_bytes = max_bytes;
    budget.max_reader_input_bytes = Some(max_bytes);
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

/// The documents of a multi-document YAML text read with `options()` (a function: the options
/// cannot be shared between threads), or `None` when the exact reader must read it.
pub fn yaml_documents(text: &str, options: fn() -> serde_saphyr::Options) -> Option<Vec<Item>> {
    yaml_documents_converted(text, options, &Keep)
}

/// [`yaml_documents`] with each Pod made into what `convert` makes of it (on the thread that
/// read its piece).
pub fn yaml_documents_converted<C: Convert>(
    text: &str,
    options: fn() -> serde_saphyr::Options,
    convert: &C,
) -> Option<Vec<Item<C::Pod>>> {
    let threads = threads();
    if threads > 1
        && text.len() >= YAML_PARALLEL_MIN_BYTES
        && let Some(docs) = yaml::documents(text, threads * 4, threads, options, convert)
    {
        return Some(docs);
    }
    let docs = serde_saphyr::from_multiple_with_options::<Raw>(text, options()).ok()?;
    Some(convert_all(docs, convert))
}

/// Below this size a YAML text is read on one thread.
const YAML_PARALLEL_MIN_BYTES: usize = 1 << 20;

/// Reading one large YAML List (`kubectl get -o yaml`) on several threads.
///
/// kubectl prints a List as one document, a mapping whose `items` is a block sequence at
/// column 0: every item starts with a line `- ` at column 0, and nothing else inside an item
/// can start at column 0 (an item's lines, block scalars and continued scalars included, are
/// indented). The text is cut before such lines into pieces read in parallel, each strictly on
/// its own: the first (`apiVersion: ...` up to the cut) must end inside `items`, the middle ones
/// must be block sequences alone, and the last is cut again at its first line at column 0 that
/// is not an item (`kind: List`): the items before, the List's fields after, with no `items`
/// among them and no field both before and after the items. A text with several documents
/// (`---`, `...`), directives (`%`), or anything that does not fit is read on one thread, so
/// the result is the sequential reader's or nothing (an alias to an anchor in another piece
/// fails its piece).
mod yaml {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use serde::Deserialize;
    use serde::de::Deserializer;

    use super::{Convert, Head, Item, Piece, Raw, join};

    pub(super) fn documents<C: Convert>(
        text: &str,
        pieces: usize,
        threads: usize,
        options: fn() -> serde_saphyr::Options,
        convert: &C,
    ) -> Option<Vec<Item<C::Pod>>> {
        if text.starts_with(['%', '-', '.'])
            || text.contains("\n---")
            || text.contains("\n...")
            || text.contains("\n%")
        {
            return None;
        }
        let items = if text.starts_with("items:") {
            0
        } else {
            text.find("\nitems:")? + 1
        };
        let mut cuts: Vec<usize> = Vec::new();
        for j in 1..pieces {
            let mut from = (text.len() * j / pieces).max(cuts.last().map_or(items, |c| c + 1));
            while !text.is_char_boundary(from) {
                from += 1;
            }
            if let Some(cut) = text[from..].find("\n- ").map(|at| from + at + 1)
                && cuts.last().is_none_or(|last| cut > *last)
            {
                cuts.push(cut);
            }
        }
        if cuts.is_empty() {
            return None;
        }
        let n = cuts.len() + 1;
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<Piece<C::Pod>>>> = Mutex::new((0..n).map(|_| None).collect());
        let failed = AtomicBool::new(false);
        std::thread::scope(|scope| {
            for _ in 0..threads.min(n) {
                scope.spawn(|| {
                    let mut scratch = C::Scratch::default();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n || failed.load(Ordering::Relaxed) {
                            return;
                        }
                        let start = if i == 0 { 0 } else { cuts[i - 1] };
                        let end = cuts.get(i).copied().unwrap_or(text.len());
                        let piece = read_piece(&text[start..end], i, n, options())
                            .map(|p| p.convert(&mut |pod| convert.pod(&mut scratch, pod)));
                        match (piece, results.lock()) {
                            (Some(p), Ok(mut r)) => r[i] = Some(p),
                            _ => failed.store(true, Ordering::Relaxed),
                        }
                    }
                });
            }
        });
        if failed.load(Ordering::Relaxed) {
            return None;
        }
        join(results.into_inner().ok()?, true)
    }

    fn read_piece(text: &str, i: usize, n: usize, options: serde_saphyr::Options) -> Option<Piece> {
        if i == 0 {
            return serde_saphyr::from_str_with_options::<HeadOf<true>>(text, options)
                .ok()
                .map(|h| h.0);
        }
        if i + 1 < n {
            let items = serde_saphyr::from_str_with_options::<Vec<Raw>>(text, options);
            return items.ok().map(Piece::items);
        }
        // The List's fields after its items: from the first line at column 0 that is not an
        // item, a comment or blank.
        let bytes = text.as_bytes();
        let fields = (0..bytes.len())
            .filter(|&at| at > 0 && bytes[at - 1] == b'\n')
            .find(|&at| {
                let entry = bytes[at] == b'-' && matches!(bytes.get(at + 1), Some(b' ' | b'\n'));
                !entry && !matches!(bytes[at], b' ' | b'\t' | b'\n' | b'\r' | b'#')
            })?;
        let items =
            serde_saphyr::from_str_with_options::<Vec<Raw>>(&text[..fields], options.clone())
                .ok()?;
        let head =
            serde_saphyr::from_str_with_options::<HeadOf<false>>(&text[fields..], options).ok()?;
        let head = head.0;
        head.items.is_empty().then_some(Piece {
            kind: head.kind,
            items,
            keys: head.keys,
        })
    }

    /// [`Head`] as a type: the first piece's (`true`: must end in the items) or the last's.
    struct HeadOf<const FIRST: bool>(Piece);

    impl<'de, const FIRST: bool> Deserialize<'de> for HeadOf<FIRST> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_map(Head {
                last_is_items: FIRST,
            })
            .map(HeadOf)
        }
    }
}

/// A JSON text's top level: an array of documents or one document.
struct Documents;

impl<'de> DeserializeSeed<'de> for Documents {
    type Value = Vec<Raw>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Raw>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Documents {
    type Value = Vec<Raw>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object or an array of objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Raw>, A::Error> {
        let mut out = Vec::new();
        while let Some(item) = seq.next_element::<Raw>()? {
            out.push(item);
        }
        Ok(out)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Vec<Raw>, A::Error> {
        Ok(vec![ItemVisitor.visit_map(map)?])
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Raw, D::Error> {
        d.deserialize_any(ItemVisitor)
    }
}

/// A top-level key of an object, borrowed from the text where the format allows.
enum Key {
    ApiVersion,
    Kind,
    Items,
    Metadata,
    Spec,
    Status,
    Other(String),
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key, E> {
                Ok(match s {
                    "apiVersion" => Key::ApiVersion,
                    "kind" => Key::Kind,
                    "items" => Key::Items,
                    "metadata" => Key::Metadata,
                    "spec" => Key::Spec,
                    "status" => Key::Status,
                    other => Key::Other(other.to_string()),
                })
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

struct ItemVisitor;

impl<'de> Visitor<'de> for ItemVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Kubernetes object")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Item::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Item::Null)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut api_version: Option<String> = None;
        let mut kind: Option<String> = None;
        let mut items: Option<Vec<Raw>> = None;
        let mut pod = LeanPod::default();
        // Fields seen before `kind` (or of a kind other than Pod), for the exact reader.
        let mut rest = serde_json::Map::new();
        while let Some(key) = map.next_key::<Key>()? {
            let is_pod = kind.as_deref() == Some("Pod");
            match key {
                Key::ApiVersion => api_version = Some(map.next_value()?),
                Key::Kind => kind = Some(map.next_value()?),
                Key::Items => items = Some(map.next_value()?),
                Key::Metadata if is_pod => pod.metadata = Some(map.next_value()?),
                Key::Spec if is_pod => pod.spec = Some(map.next_value()?),
                Key::Status if is_pod => pod.status = Some(map.next_value()?),
                // A Pod's other fields are not read (k8s_openapi ignores unknown ones too).
                Key::Other(_) if is_pod => {
                    map.next_value::<IgnoredAny>()?;
                }
                Key::Metadata => {
                    rest.insert("metadata".into(), map.next_value()?);
                }
                Key::Spec => {
                    rest.insert("spec".into(), map.next_value()?);
                }
                Key::Status => {
                    rest.insert("status".into(), map.next_value()?);
                }
                Key::Other(k) => {
                    rest.insert(k, map.next_value()?);
                }
            }
        }
        let Some(kind) = kind else {
            return Err(decline());
        };
        if let Some(items) = items {
            if !LIST_KINDS.contains(&kind.as_str()) {
                return Err(decline());
            }
            return Ok(Item::List(items));
        }
        if LIST_KINDS.contains(&kind.as_str()) {
            return Err(decline());
        }
        if kind != "Pod" {
            rest.insert("kind".into(), kind.into());
            if let Some(v) = api_version {
                rest.insert("apiVersion".into(), v.into());
            }
            return Ok(Item::Other(serde_json::Value::Object(rest)));
        }
        if api_version.as_deref() != Some("v1") {
            return Err(decline());
        }
        // Fields that came before `kind`.
        let lean = |v: serde_json::Value| serde_json::from_value(v).map_err(|_| decline());
        if let Some(v) = rest.remove("metadata") {
            pod.metadata = Some(lean(v)?);
        }
        if let Some(v) = rest.remove("spec") {
            pod.spec = Some(serde_json::from_value(v).map_err(|_| decline::<A::Error>())?);
        }
        if let Some(v) = rest.remove("status") {
            pod.status = Some(serde_json::from_value(v).map_err(|_| decline::<A::Error>())?);
        }
        if !pod.accepted() {
            return Err(decline());
        }
        Ok(Item::Pod(Box::new(pod)))
    }
}

/// A Pod as the fast reader keeps it: the fields Stowage reads of a Pod and no other. It is
/// read through [`LeanPod::view`] by the same conversion as a `k8s_openapi` Pod
/// (`stowage_solver::convert::PodView`), so no `k8s_openapi` Pod is built (2.2 KB, and 2.1 KB
/// per container, mostly empty) for a dump's pods.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LeanPod {
    pub metadata: Option<LeanMeta>,
    pub spec: Option<LeanSpec>,
    pub status: Option<LeanStatus>,
}

/// What is read of a Pod's `metadata`.
#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LeanMeta {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub annotations: Option<BTreeMap<String, String>>,
    pub owner_references: Option<Vec<meta::OwnerReference>>,
    pub deletion_timestamp: Option<meta::Time>,
}

/// What is read of a Pod's `spec`.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LeanSpec {
    pub node_name: Option<String>,
    pub containers: Option<Vec<LeanContainer>>,
    pub init_containers: Option<Vec<LeanContainer>>,
    pub overhead: Option<BTreeMap<String, Quantity>>,
    pub node_selector: Option<BTreeMap<String, String>>,
    pub priority: Option<i32>,
    pub priority_class_name: Option<String>,
    pub termination_grace_period_seconds: Option<i64>,
    pub tolerations: Option<Vec<core::Toleration>>,
    pub affinity: Option<core::Affinity>,
    pub topology_spread_constraints: Option<Vec<core::TopologySpreadConstraint>>,
}

/// What is read of a container.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LeanContainer {
    pub name: Option<String>,
    pub resources: Option<core::ResourceRequirements>,
    pub ports: Option<Vec<core::ContainerPort>>,
    pub restart_policy: Option<String>,
}

/// What is read of a Pod's `status`.
#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LeanStatus {
    pub phase: Option<String>,
    pub conditions: Option<Vec<core::PodCondition>>,
    pub nominated_node_name: Option<String>,
}

impl ContainerView for LeanContainer {
    fn resources(&self) -> Option<&core::ResourceRequirements> {
        self.resources.as_ref()
    }

    fn ports(&self) -> &[core::ContainerPort] {
        self.ports.as_deref().unwrap_or_default()
    }

    fn restart_policy(&self) -> Option<&str> {
        self.restart_policy.as_deref()
    }
}

impl LeanContainer {
    fn into_container(self) -> core::Container {
        core::Container {
            // Checked by `LeanPod::accepted`.
            name: self.name.unwrap_or_default(),
            resources: self.resources,
            ports: self.ports,
            restart_policy: self.restart_policy,
            ..Default::default()
        }
    }
}

impl LeanPod {
    /// Whether `k8s_openapi` reads it as a Pod too: a spec has `containers`, and each container
    /// a name (else the exact reader reads the file and names the field).
    fn accepted(&self) -> bool {
        self.spec.as_ref().is_none_or(|s| {
            s.containers.is_some()
                && s.containers
                    .iter()
                    .chain(&s.init_containers)
                    .flatten()
                    .all(|c| c.name.is_some())
        })
    }

    /// What Stowage reads of it, as of a `k8s_openapi` Pod.
    pub fn view(&self) -> PodView<'_, LeanContainer> {
        let m = self.metadata.as_ref();
        PodView {
            name: m.and_then(|m| m.name.as_deref()),
            namespace: m.and_then(|m| m.namespace.as_deref()),
            // Not read: `plan` sends no Events and does not age pods.
            uid: None,
            creation_timestamp: None,
            deletion_timestamp: m.and_then(|m| m.deletion_timestamp.as_ref()),
            labels: m.and_then(|m| m.labels.as_ref()),
            annotations: m.and_then(|m| m.annotations.as_ref()),
            owner_references: m
                .and_then(|m| m.owner_references.as_deref())
                .unwrap_or_default(),
            spec: self.spec.as_ref().map(|s| SpecView {
                node_name: s.node_name.as_deref(),
                containers: s.containers.as_deref().unwrap_or_default(),
                init_containers: s.init_containers.as_deref().unwrap_or_default(),
                overhead: s.overhead.as_ref(),
                node_selector: s.node_selector.as_ref(),
                priority: s.priority,
                priority_class_name: s.priority_class_name.as_deref(),
                termination_grace_period_seconds: s.termination_grace_period_seconds,
                tolerations: s.tolerations.as_deref().unwrap_or_default(),
                affinity: s.affinity.as_ref(),
                topology_spread_constraints: s
                    .topology_spread_constraints
                    .as_deref()
                    .unwrap_or_default(),
            }),
            status: self.status.as_ref().map(|s| StatusView {
                phase: s.phase.as_deref(),
                conditions: s.conditions.as_deref().unwrap_or_default(),
                nominated_node_name: s.nominated_node_name.as_deref(),
            }),
        }
    }

    /// The `k8s_openapi` Pod with the fields read (for callers that need the object itself).
    pub fn into_pod(self) -> core::Pod {
        let m = self.metadata.unwrap_or_default();
        let metadata = meta::ObjectMeta {
            name: m.name,
            namespace: m.namespace,
            labels: m.labels,
            annotations: m.annotations,
            owner_references: m.owner_references,
            deletion_timestamp: m.deletion_timestamp,
            ..Default::default()
        };
        let spec = self.spec.map(|s| core::PodSpec {
            node_name: s.node_name,
            containers: s
                .containers
                .into_iter()
                .flatten()
                .map(LeanContainer::into_container)
                .collect(),
            init_containers: s
                .init_containers
                .map(|cs| cs.into_iter().map(LeanContainer::into_container).collect()),
            overhead: s.overhead,
            node_selector: s.node_selector,
            priority: s.priority,
            priority_class_name: s.priority_class_name,
            termination_grace_period_seconds: s.termination_grace_period_seconds,
            tolerations: s.tolerations,
            affinity: s.affinity,
            topology_spread_constraints: s.topology_spread_constraints,
            ..Default::default()
        });
        let status = self.status.map(|s| core::PodStatus {
            phase: s.phase,
            conditions: s.conditions,
            nominated_node_name: s.nominated_node_name,
            ..Default::default()
        });
        core::Pod {
            metadata,
            spec,
            status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps each Pod in its lean form, to compare with what the parser made.
    struct Same;

    impl Convert for Same {
        type Pod = Box<LeanPod>;
        type Scratch = ();

        fn pod(&self, _: &mut (), pod: Box<LeanPod>) -> Box<LeanPod> {
            pod
        }
    }

    fn pod(i: usize) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("p-{i}"), "namespace": "ns", "labels": {"app": "a"}},
            "spec": {"containers": [
                {"name": "a", "env": [{"name": "X", "value": "},\n        {"}],
                 "resources": {"requests": {"cpu": "100m"}}},
                {"name": "b", "resources": {"requests": {"memory": "1Gi"}}}]},
            "status": {"phase": "Pending"}
        })
    }

    /// As kubectl prints it: 4-space indentation.
    fn kubectl(value: &serde_json::Value) -> String {
        use serde::Serialize as _;
        let mut out = Vec::new();
        let f = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        value
            .serialize(&mut serde_json::Serializer::with_formatter(&mut out, f))
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Pods of every shape the conversion tells apart, and pods it refuses.
    fn varied_pods() -> Vec<serde_json::Value> {
        let rich = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "rich", "namespace": "shop", "uid": "u-1",
                "labels": {"app": "web", "tier": "front"},
                "annotations": {"stowage.dev/do-not-disrupt": "true", "kubernetes.io/config.mirror": "x"},
                "ownerReferences": [
                    {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "u-2", "controller": true},
                    {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "d", "uid": "u-3"}],
                "deletionTimestamp": "2026-11-29T10:00:00Z"},
            "spec": {
                "nodeName": "",
                "containers": [
                    {"name": "app", "image": "nginx",
                     "resources": {"requests": {"cpu": "500m", "memory": "512Mi"},
                                   "limits": {"cpu": "1", "nvidia.com/gpu": "1"}},
                     "ports": [{"containerPort": 80, "hostPort": 8080, "protocol": "TCP"}]},
                    {"name": "side", "resources": {"limits": {"memory": "1Gi"}}},
                    {"name": "bare"}
                ],
                "initContainers": [
                    {"name": "proxy", "restartPolicy": "Always",
                     "resources": {"requests": {"cpu": "100m", "memory": "0"}},
                     "ports": [{"containerPort": 53, "hostPort": 53, "protocol": "UDP", "hostIP": "10.0.0.1"}]},
                    {"name": "migrate", "resources": {"requests": {"cpu": "3", "memory": "4Gi"}}},
                    {"name": "late-sidecar", "restartPolicy": "Always", "resources": {"requests": {"cpu": "2"}}}
                ],
                "overhead": {"cpu": "50m", "memory": "10Mi"},
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "priority": 1000,
                "priorityClassName": "system-node-critical",
                "terminationGracePeriodSeconds": 5,
                "tolerations": [
                    {"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"},
                    {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                    {"key": "stowage.dev/disrupted", "operator": "Exists"}],
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]},
                            {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["node-x"]}]}]},
                        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "preference":
                            {"matchExpressions": [{"key": "karpenter.sh/capacity-type", "operator": "Gt", "values": ["3"]}]}}]},
                    "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                        "labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "topology.kubernetes.io/zone",
                        "namespaces": ["a", "b"]}]},
                    "podAntiAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": [{
                            "labelSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]},
                            "topologyKey": "kubernetes.io/hostname", "namespaceSelector": {}}],
                        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 50,
                            "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "web"}},
                                "topologyKey": "kubernetes.io/hostname", "matchLabelKeys": ["tier"]}}]}},
                "topologySpreadConstraints": [
                    {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
                     "labelSelector": {"matchLabels": {"app": "web"}}, "matchLabelKeys": ["tier", "absent"], "minDomains": 3},
                    {"maxSkew": 2, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway"}]
            },
            "status": {"phase": "Pending", "nominatedNodeName": "n-2",
                "conditions": [{"type": "Ready", "status": "False"},
                    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}
        });
        let mut pods = vec![rich];
        for (name, spec, status) in [
            // No namespace, one container without resources, no status.
            (
                "minimal",
                serde_json::json!({"containers": [{"name": "a"}]}),
                None,
            ),
            (
                "limits-only",
                serde_json::json!({"containers": [{"name": "a",
                    "resources": {"limits": {"cpu": "2", "memory": "1Gi", "ephemeral-storage": "1Gi"}}}]}),
                Some(serde_json::json!({"phase": "Succeeded"})),
            ),
            (
                "bad-quantity",
                serde_json::json!({"containers": [{"name": "a"}],
                    "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2x"}}}]}),
                None,
            ),
            (
                "negative",
                serde_json::json!({"containers": [{"name": "a", "resources": {"limits": {"memory": "-1"}}}]}),
                None,
            ),
            (
                "bad-toleration",
                serde_json::json!({"containers": [{"name": "a"}],
                    "tolerations": [{"key": "k", "operator": "Equal"}, {"key": "k", "operator": "Maybe"}]}),
                None,
            ),
            (
                "bad-spread",
                serde_json::json!({"containers": [{"name": "a"}], "topologySpreadConstraints": [
                    {"maxSkew": 0, "topologyKey": "z", "whenUnsatisfiable": "DoNotSchedule"}]}),
                None,
            ),
            (
                "bad-field",
                serde_json::json!({"containers": [{"name": "a"}], "affinity": {"nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                        {"matchFields": [{"key": "spec.x", "operator": "In", "values": ["y"]}]}]}}}}),
                None,
            ),
            ("", serde_json::json!({"containers": [{"name": "a"}]}), None),
        ] {
            let mut pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name}, "spec": spec});
            if let Some(status) = status {
                pod["status"] = status;
            }
            pods.push(pod);
        }
        pods.push(
            serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "no-spec"}}),
        );
        pods
    }

    /// The lean form, read through its view, converts as the `k8s_openapi` Pod does: the same
    /// `PodRequest` (or the same error) and the same fields for the controllers' facts.
    #[test]
    fn the_lean_view_converts_as_the_full_pod() {
        use stowage_solver::convert;
        let pods = varied_pods();
        let text = kubectl(&serde_json::Value::Array(pods.clone()));
        let read = json_documents_converted(&text, &Same).expect("the fast reader reads them");
        assert_eq!(read.len(), pods.len());
        let mut converted = 0;
        for (item, value) in read.iter().zip(&pods) {
            let Item::Pod(lean) = item else {
                panic!("a pod: {item:?}");
            };
            let full: core::Pod = serde_json::from_value(value.clone()).unwrap();
            let (l, f) = (lean.view(), convert::PodView::of(&full));
            let share = |labels: &BTreeMap<String, String>| std::sync::Arc::new(labels.clone());
            let (from_lean, from_full) = (
                convert::pod_from_view(&l, share).map_err(|e| e.to_string()),
                convert::pod(&full).map_err(|e| e.to_string()),
            );
            assert_eq!(from_lean, from_full, "{value}");
            converted += usize::from(from_full.is_ok());
            // What the controllers read beyond the solver (`uid` and the creation time are not
            // read from a dump).
            assert_eq!(
                (
                    l.name,
                    l.namespace,
                    l.deletion_timestamp,
                    l.labels,
                    l.annotations
                ),
                (
                    f.name,
                    f.namespace,
                    f.deletion_timestamp,
                    f.labels,
                    f.annotations
                ),
            );
            assert_eq!(l.owner_references, f.owner_references);
            assert_eq!(
                l.spec.map(|s| (
                    s.node_name,
                    s.priority,
                    s.priority_class_name,
                    s.termination_grace_period_seconds,
                    s.tolerations
                )),
                f.spec.map(|s| (
                    s.node_name,
                    s.priority,
                    s.priority_class_name,
                    s.termination_grace_period_seconds,
                    s.tolerations
                )),
            );
            assert_eq!(
                l.status
                    .map(|s| (s.phase, s.conditions, s.nominated_node_name)),
                f.status
                    .map(|s| (s.phase, s.conditions, s.nominated_node_name)),
            );
            // And the k8s Pod made of the lean one is read alike.
            let made = (**lean).clone().into_pod();
            assert_eq!(
                convert::pod(&made).map_err(|e| e.to_string()),
                from_full,
                "{value}"
            );
        }
        assert_eq!(converted, 3, "rich, minimal and limits-only convert");
        let rich = convert::pod(&serde_json::from_value(pods[0].clone()).unwrap()).unwrap();
        assert!(
            rich.host_ports.len() == 2
                && rich.topology_spread.len() == 2
                && rich.pod_affinity.len() == 1
                && rich.pod_anti_affinity.len() == 1
                && rich.preferred_pod_anti_affinity.len() == 1
                && rich.required_node_affinity.len() == 2
                && rich.preferred_node_affinity.len() == 1
                && rich.tolerations.len() == 3
                && rich.owner.as_deref() == Some("ReplicaSet/web-1"),
            "{rich:?}"
        );
    }

    #[test]
    fn squeezing_indentation_keeps_meaning_and_validity() {
        let squeezed = |text: &str| {
            let mut buf = text.as_bytes().to_vec();
            stream::squeeze_indentation(&mut buf);
            String::from_utf8(buf).unwrap()
        };
        assert_eq!(
            squeezed("{\n    \"a\": [\n            1,\n  2\n    ]\n}\n   "),
            "{\n\"a\": [\n1,\n2\n]\n}\n"
        );
        // Spaces not after a newline (inside strings too) stay; tabs and CR are not touched.
        assert_eq!(
            squeezed("  {\"a b\":\t\"  c\"}\r\n  x"),
            "  {\"a b\":\t\"  c\"}\r\nx"
        );
        // Text the parser accepts or refuses stays so, with the same value.
        for text in [
            kubectl(&pod(7)),
            kubectl(&serde_json::json!([1, "x\\n  y", {"k": [true, null]}])),
            "[1\n    2]".to_string(),
            "[\"a\n    b\"]".to_string(),
            "{\"a\":\n         }".to_string(),
        ] {
            let before = serde_json::from_str::<serde_json::Value>(&text).ok();
            let after = serde_json::from_str::<serde_json::Value>(&squeezed(&text)).ok();
            assert_eq!(before, after, "{text}");
        }
    }

    #[test]
    fn reading_in_pieces_equals_sequential_reading() {
        let items: Vec<_> = (0..300).map(pod).collect();
        let list = serde_json::json!({"apiVersion": "v1", "items": items, "kind": "List",
            "metadata": {"resourceVersion": ""}});
        for text in [
            kubectl(&list),
            kubectl(&serde_json::Value::Array(items.clone())),
        ] {
            let sequential = json_sequential(&text).unwrap();
            // Pieces smaller than an item, of a few items, and the whole text in one.
            for piece in [1, 100, 1_000, 9_000, text.len() - 1, text.len(), 1 << 20] {
                for threads in [1, 2, 3] {
                    let read = stream::documents(text.as_bytes(), threads, piece, &Same);
                    assert_eq!(
                        read.as_ref(),
                        Some(&sequential),
                        "{threads} threads, {piece}"
                    );
                }
            }
        }
        let Item::List(read) = &json_sequential(&kubectl(&list)).unwrap()[0] else {
            panic!("a List");
        };
        assert_eq!(read.len(), 300);
    }

    /// A reader handing out a few bytes per call, as a pipe may.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.0.len()).min(7);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn short_reads_do_not_change_the_pieces() {
        let items: Vec<_> = (0..40).map(pod).collect();
        let text = kubectl(&serde_json::json!({"kind": "PodList", "items": items}));
        let sequential = json_sequential(&text).unwrap();
        for piece in [50, 2_000] {
            let read = stream::documents(Trickle(text.as_bytes()), 2, piece, &Same);
            assert_eq!(read.as_ref(), Some(&sequential), "{piece}");
        }
        assert_eq!(
            json_reader(Trickle(text.as_bytes())),
            Some(convert_all(sequential, &Keep))
        );
    }

    #[test]
    fn reading_in_pieces_declines_what_the_sequential_reader_declines() {
        let items: Vec<_> = (0..50).map(pod).collect();
        let pieces = |text: &str| stream::documents(text.as_bytes(), 2, 500, &Same);
        // Compact: no line to cut at; read whole.
        let compact = serde_json::json!({"kind": "List", "items": items}).to_string();
        assert_eq!(pieces(&compact), json_sequential(&compact));
        assert!(pieces(&compact).is_some());
        // Another array of objects after the items, at their indentation: a cut there does not
        // fit the items.
        let other: Vec<_> = (0..400).map(|i| serde_json::json!({"n": i})).collect();
        let text =
            kubectl(&serde_json::json!({"kind": "List", "items": &items[..2], "zother": other}));
        assert!(pieces(&text).is_none());
        // Not a List.
        let text = kubectl(&serde_json::json!({"kind": "Pod", "items": items}));
        assert!(pieces(&text).is_none());
        // A List whose last item is broken, one whose items are not closed, one with trailing
        // text, and one that is not UTF-8 in its middle.
        let good = kubectl(&serde_json::json!({"kind": "List", "items": items}));
        assert!(pieces(&good).is_some());
        let at = good.rfind("\"p-49\"").unwrap();
        let broken = format!("{}\"p-49\" 1{}", &good[..at], &good[at + 6..]);
        assert!(pieces(&broken).is_none());
        let unclosed = good
            .trim_end()
            .trim_end_matches('}')
            .trim_end()
            .trim_end_matches(']');
        assert!(pieces(unclosed).is_none());
        assert!(pieces(&format!("{good} {{}}")).is_none());
        let mut bytes = good.clone().into_bytes();
        let at = good.find("\"p-25\"").unwrap();
        bytes[at + 1] = 0xff;
        assert!(stream::documents(&bytes[..], 2, 500, &Same).is_none());
        // Not JSON at all.
        assert!(stream::documents(&b"kind: List\nitems: []\n"[..], 2, 5, &Same).is_none());
    }

    fn yaml_options() -> serde_saphyr::Options {
        super::yaml_options(1_000, 1 << 30)
    }

    fn yaml_sequential(text: &str) -> Option<Vec<Raw>> {
        serde_saphyr::from_multiple_with_options::<Raw>(text, yaml_options()).ok()
    }

    #[test]
    fn yaml_lists_read_in_pieces_equal_sequential_reading() {
        let items: Vec<_> = (0..60).map(pod).collect();
        let list = serde_json::json!({"apiVersion": "v1", "items": items, "kind": "List",
            "metadata": {"resourceVersion": ""}});
        let printed = serde_saphyr::to_string(&list).unwrap();
        assert!(printed.contains("\nitems:\n- "), "{printed}");
        // As kubectl prints some values: a block scalar, a comment, a blank line in an item.
        let kubectl = printed.replacen(
            "\n  kind: Pod\n",
            "\n  kind: Pod\n  # a comment\n\n  script: |\n    - not an item\n    x: 1\n",
            5,
        );
        // Non-ASCII text where a cut is looked for.
        let wide = printed.replace("name: p-", "name: ééééééééééééééééééééééééééééééé-p-");
        for text in [printed, kubectl, wide] {
            let sequential = yaml_sequential(&text).unwrap();
            let Item::List(read) = &sequential[0] else {
                panic!("a List");
            };
            assert_eq!(read.len(), 60);
            for pieces in [2, 3, 8, 59, 60, 200] {
                let read = yaml::documents(&text, pieces, 2, yaml_options, &Same);
                assert_eq!(read.as_ref(), Some(&sequential), "{pieces} pieces");
            }
        }
    }

    #[test]
    fn yaml_pieces_decline_what_does_not_fit() {
        let items: Vec<_> = (0..20).map(pod).collect();
        let pieces = |text: &str| yaml::documents(text, 4, 2, yaml_options, &Same);
        let good =
            serde_saphyr::to_string(&serde_json::json!({"kind": "List", "items": items})).unwrap();
        assert!(pieces(&good).is_some());
        // Several documents.
        assert!(pieces(&format!("{good}---\nkind: Pod\n")).is_none());
        // Not a List kind; no kind.
        assert!(pieces(&good.replace("kind: List", "kind: Pod")).is_none());
        assert!(pieces(&good.replace("kind: List\n", "")).is_none());
        // A field before and after the items.
        assert!(pieces(&format!("kind: List\n{good}")).is_none());
        // Another sequence at column 0 after the items.
        let other: Vec<_> = (0..40).map(|i| serde_json::json!({"n": i})).collect();
        let text = serde_saphyr::to_string(
            &serde_json::json!({"kind": "List", "items": &items[..2], "zother": other}),
        )
        .unwrap();
        assert!(text.contains("\nzother:\n- "), "{text}");
        assert!(pieces(&text).is_none());
        // An alias to an anchor in another piece.
        let anchored = good.replacen("namespace: ns", "namespace: &n ns", 1);
        let aliased = format!(
            "{}namespace: *n{}",
            &anchored[..anchored.rfind("namespace: ns").unwrap()],
            &anchored[anchored.rfind("namespace: ns").unwrap() + 13..]
        );
        assert!(yaml_sequential(&aliased).is_some());
        assert!(pieces(&aliased).is_none());
        // A broken item.
        assert!(pieces(&good.replacen("name: p-15", "name: [p-15", 1)).is_none());
    }

    #[test]
    fn a_json_list_field_before_and_after_the_items_is_declined() {
        let items: Vec<_> = (0..50).map(pod).collect();
        let text = kubectl(&serde_json::json!({"items": items, "kind": "List"}));
        let text = text.replacen("{\n", "{\n    \"kind\": \"PodList\",\n", 1);
        assert!(json_sequential(&text).is_some());
        assert!(stream::documents(text.as_bytes(), 2, 500, &Same).is_none());
    }
}
