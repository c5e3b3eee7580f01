//! PCRE2 patterns for `ngx.re`: the options string as lua-nginx-module reads it, compilation
//! (JIT where available) with lua-nginx-module's error wording, and one bounded LRU cache of
//! compiled patterns shared by every worker. A compiled pattern depends only on its source and
//! options, so the cache is process-wide: engines share it too.

use std::cell::RefCell;
use std::num::NonZeroUsize;
use std::sync::{Arc, OnceLock};

use lru::LruCache;
use parking_lot::Mutex;
use pcre2::bytes::{CaptureLocations, Regex, RegexBuilder};
use rustc_hash::FxBuildHasher;

/// lua-nginx-module's default `lua_regex_cache_max_entries`.
const CACHE_ENTRIES: usize = 1024;

/// Match data kept per pattern for reuse.
const SPARE_MATCH_DATA: usize = 8;

/// PCRE2's error for a start offset past the subject (`PCRE2_ERROR_BADOFFSET`): what
/// lua-nginx-module reports when `ctx.pos` points beyond the end.
const ERROR_BADOFFSET: i32 = -33;

/// The JIT stack a match may grow to (reserved per match data, used on demand). Every pattern is
/// JIT-compiled (lua-nginx-module does it only with `j`), so the interpreter's generous heap
/// limit no longer applies; PCRE2's 32 KB default would fail patterns that work without `j` in
/// OpenResty.
const JIT_STACK: usize = 256 << 10;

/// The options of the `opts` string that change the compiled pattern. `o` (compile once) and
/// `j` (JIT) are accepted and implied: every pattern is cached and JIT-compiled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Options(u8);

impl Options {
    const CASELESS: u8 = 1;
    const MULTILINE: u8 = 1 << 1;
    const DOTALL: u8 = 1 << 2;
    const EXTENDED: u8 = 1 << 3;
    const ANCHORED: u8 = 1 << 4;
    const UTF: u8 = 1 << 5;
    const DUPNAMES: u8 = 1 << 6;
    const JAVASCRIPT: u8 = 1 << 7;

    /// Reads lua-nginx-module's options string. `Err(Some(message))` is the error
    /// lua-nginx-module raises for an unknown flag; `Err(None)` is DFA mode (`d`), which this
    /// engine does not offer.
    pub(crate) fn parse(opts: &[u8]) -> Result<Options, Option<String>> {
        let mut bits = 0;
        for &flag in opts {
            bits |= match flag {
                b'o' | b'j' => 0,
                b'i' => Options::CASELESS,
                b'm' => Options::MULTILINE,
                b's' => Options::DOTALL,
                b'x' => Options::EXTENDED,
                b'a' => Options::ANCHORED,
                // PCRE2 checks UTF-8 in both cases: skipping the check (`U`) is unsafe on bad input.
                b'u' | b'U' => Options::UTF,
                b'D' => Options::DUPNAMES,
                b'J' => Options::JAVASCRIPT,
                b'd' => return Err(None),
                other => {
                    let (flag, all) = (char::from(other), String::from_utf8_lossy(opts));
                    return Err(Some(format!("unknown flag \"{flag}\" (flags \"{all}\")")));
                }
            };
        }
        Ok(Options(bits))
    }

    fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
}

/// A compiled pattern and what the `ngx.re` functions need to know about it.
pub(crate) struct Pattern {
    regex: Regex,
    utf: bool,
    dupnames: bool,
    /// (name, group) for each named group, in group order.
    names: Vec<(String, usize)>,
    /// Match data to reuse: creating it (with its JIT stack) costs more than a match.
    spare: Mutex<Vec<CaptureLocations>>,
}

/// Where a successful match put the pattern's groups; its match data goes back to the pattern
/// when dropped.
pub(crate) struct Captures<'p> {
    locations: Option<CaptureLocations>,
    spare: &'p Mutex<Vec<CaptureLocations>>,
}

impl Captures<'_> {
    fn locations(&self) -> &CaptureLocations {
        self.locations.as_ref().expect("held until dropped")
    }

    /// The (start, end) byte offsets of group `i`, None when it did not take part.
    pub(crate) fn get(&self, i: usize) -> Option<(usize, usize)> {
        self.locations().get(i)
    }

    /// The whole match.
    pub(crate) fn whole(&self) -> (usize, usize) {
        self.get(0).expect("a match has group 0")
    }
}

impl Drop for Captures<'_> {
    fn drop(&mut self) {
        if let Some(locations) = self.locations.take() {
            let mut spare = self.spare.lock();
            // Enough for the workers matching one pattern at once; more would only hold memory.
            if spare.len() < SPARE_MATCH_DATA {
                spare.push(locations);
            }
        }
    }
}

impl Pattern {
    /// The number of capturing groups (not counting group 0).
    pub(crate) fn groups(&self) -> usize {
        self.regex.captures_len() - 1
    }

    pub(crate) fn names(&self) -> &[(String, usize)] {
        &self.names
    }

    /// Whether named groups may share a name (`D`): their values are then collected in tables.
    pub(crate) fn dupnames(&self) -> bool {
        self.dupnames
    }

    /// The group named `name`: the first that matched when names repeat.
    pub(crate) fn group_named(&self, name: &[u8]) -> Option<usize> {
        self.names.iter().find(|(n, _)| n.as_bytes() == name).map(|(_, group)| *group)
    }

    /// Matches `subject` from byte offset `start`. The error is lua-nginx-module's
    /// `pcre_exec() failed: <PCRE2 code>` (e.g. -47 when the match limit stops a runaway
    /// backtracking pattern).
    pub(crate) fn exec(&self, subject: &[u8], start: usize) -> Result<Option<Captures<'_>>, String> {
        if start > subject.len() {
            return Err(format!("pcre_exec() failed: {ERROR_BADOFFSET}"));
        }
        let locations = self.spare.lock().pop().unwrap_or_else(|| self.regex.capture_locations());
        let mut captures = Captures { locations: Some(locations), spare: &self.spare };
        let found = self.regex.captures_read_at(captures.locations.as_mut().expect("just set"), subject, start);
        match found {
            Ok(Some(_)) => Ok(Some(captures)),
            Ok(None) => Ok(None),
            Err(error) => Err(format!("pcre_exec() failed: {}", error.code())),
        }
    }

    /// Where the next global match starts after one that ended at `end`: right there, or one
    /// character further after an empty match, so that matching always advances.
    pub(crate) fn next_start(&self, subject: &[u8], (start, end): (usize, usize)) -> usize {
        if end != start {
            return end;
        }
        let mut next = end + 1;
        if self.utf {
            while next < subject.len() && subject[next] & 0xC0 == 0x80 {
                next += 1;
            }
        }
        next
    }
}

type Cache = Mutex<LruCache<Box<[u8]>, Arc<Pattern>, FxBuildHasher>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| {
        let entries = NonZeroUsize::new(CACHE_ENTRIES).expect("the cache holds entries");
        Mutex::new(LruCache::with_hasher(entries, FxBuildHasher))
    })
}

thread_local! {
    /// The lookup key of the last call, reused so that a cache hit allocates nothing.
    static KEY: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The compiled `pattern`, from the cache or compiled now. The error is lua-nginx-module's
/// `pcre2_compile() failed: ... in "<pattern>"` message.
pub(crate) fn compile(pattern: &[u8], options: Options) -> Result<Arc<Pattern>, String> {
    KEY.with_borrow_mut(|key| {
        key.clear();
        key.push(options.0);
        key.extend_from_slice(pattern);
        if let Some(found) = cache().lock().get(key.as_slice()) {
            return Ok(found.clone());
        }
        let compiled = Arc::new(build(pattern, options)?);
        cache().lock().put(key.as_slice().into(), compiled.clone());
        Ok(compiled)
    })
}

fn build(pattern: &[u8], options: Options) -> Result<Pattern, String> {
    let (source, prefix) = source(pattern, options)?;
    let regex = RegexBuilder::new()
        .caseless(options.has(Options::CASELESS))
        .multi_line(options.has(Options::MULTILINE))
        .dotall(options.has(Options::DOTALL))
        .extended(options.has(Options::EXTENDED))
        .utf(options.has(Options::UTF))
        .jit_if_available(true)
        .max_jit_stack_size(Some(JIT_STACK))
        .build(&source)
        .map_err(|error| compile_error(pattern, &error, prefix))?;
    let names = regex
        .capture_names()
        .iter()
        .enumerate()
        .filter_map(|(group, name)| name.as_ref().map(|name| (name.clone(), group)))
        .collect();
    let (utf, dupnames) = (options.has(Options::UTF), options.has(Options::DUPNAMES));
    Ok(Pattern { regex, utf, dupnames, names, spare: Mutex::default() })
}

/// lua-nginx-module's wording: the PCRE2 message, the pattern, and where in it PCRE2 stopped
/// (unless that is the end).
fn compile_error(pattern: &[u8], error: &pcre2::Error, prefix: usize) -> String {
    let text = error.to_string();
    let offset = error.offset().unwrap_or(0);
    let message = text
        .strip_prefix(&format!("PCRE2: error compiling pattern at offset {offset}: "))
        .or_else(|| text.strip_prefix("PCRE2: "))
        .unwrap_or(&text);
    let quoted = String::from_utf8_lossy(pattern);
    // The offset is into the source given to PCRE2, which may have a prefix of ours.
    let offset = offset.saturating_sub(prefix).min(pattern.len());
    if offset == pattern.len() {
        format!("pcre2_compile() failed: {message} in \"{quoted}\"")
    } else {
        format!(
            "pcre2_compile() failed: {message} in \"{quoted}\" at \"{}\"",
            String::from_utf8_lossy(&pattern[offset..])
        )
    }
}

/// The pattern text handed to PCRE2 (which the crate takes as `&str`) and the length of any
/// prefix added: raw bytes that are not UTF-8 become `\xHH` escapes (outside UTF mode they
/// match that byte), `J` turns JavaScript's `\uHHHH` into `\x{HHHH}`, `D` is PCRE2's `(?J)`,
/// and `a` anchors every alternative at the start offset with `\G`, as PCRE2_ANCHORED does.
fn source(pattern: &[u8], options: Options) -> Result<(String, usize), String> {
    let mut text = String::with_capacity(pattern.len() + 12);
    if options.has(Options::DUPNAMES) {
        text.push_str("(?J)");
    }
    let anchored = options.has(Options::ANCHORED);
    if anchored {
        text.push_str("\\G(?:");
    }
    let prefix = text.len();
    for chunk in pattern.utf8_chunks() {
        push_escaped(&mut text, chunk.valid(), options.has(Options::JAVASCRIPT));
        if chunk.invalid().is_empty() {
            continue;
        }
        if options.has(Options::UTF) {
            return Err(format!(
                "pcre2_compile() failed: UTF-8 error: invalid byte in \"{}\"",
                String::from_utf8_lossy(pattern)
            ));
        }
        // A backslash escaping the byte is dropped: the hex escape is literal already.
        if odd_backslashes(&text[prefix..]) {
            text.pop();
        }
        for byte in chunk.invalid() {
            text.push_str(&format!("\\x{byte:02x}"));
        }
    }
    if anchored {
        // A trailing `#` comment in extended mode would swallow the closing parenthesis.
        text.push_str(if options.has(Options::EXTENDED) { "\n)" } else { ")" });
    }
    Ok((text, prefix))
}

/// Appends `valid`, rewriting JavaScript's `\uHHHH` when `javascript` is set.
fn push_escaped(text: &mut String, valid: &str, javascript: bool) {
    if !javascript {
        text.push_str(valid);
        return;
    }
    let mut rest = valid;
    while let Some(at) = rest.find("\\u") {
        let (before, after) = rest.split_at(at);
        text.push_str(before);
        let hex = after.get(2..6).filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()));
        match hex {
            Some(hex) if !odd_backslashes(text) => {
                text.push_str(&format!("\\x{{{hex}}}"));
                rest = &after[6..];
            }
            _ => {
                text.push_str("\\u");
                rest = &after[2..];
            }
        }
    }
    text.push_str(rest);
}

/// Whether `text` ends in an odd run of backslashes, i.e. the next character is escaped.
fn odd_backslashes(text: &str) -> bool {
    text.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(text: &str) -> Options {
        Options::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn options_parse_like_lua_nginx_module() {
        assert_eq!(opts("jo"), Options::default());
        assert_eq!(opts("u"), opts("U"));
        assert_eq!(Options::parse(b"d"), Err(None));
        assert_eq!(Options::parse(b"iH"), Err(Some("unknown flag \"H\" (flags \"iH\")".into())));
    }

    #[test]
    fn sources_escape_what_pcre2_cannot_take_as_text() {
        assert_eq!(source(b"a\xffb", opts("")).unwrap().0, "a\\xffb");
        assert_eq!(source(b"a\\\xff", opts("")).unwrap().0, "a\\xff");
        assert!(source(b"\xff", opts("u")).is_err());
        assert_eq!(source(b"\\u7AE0", opts("J")).unwrap().0, "\\x{7AE0}");
        assert_eq!(source(b"\\\\u7AE0", opts("J")).unwrap().0, "\\\\u7AE0");
        assert_eq!(source(b"a|b", opts("a")).unwrap(), ("\\G(?:a|b)".into(), 5));
        assert_eq!(source(b"a|b", opts("Da")).unwrap(), ("(?J)\\G(?:a|b)".into(), 9));
    }

    #[test]
    fn compiled_patterns_are_shared() {
        let a = compile(b"(\\d+)-(?<word>\\w+)", opts("i")).unwrap();
        let b = compile(b"(\\d+)-(?<word>\\w+)", opts("io")).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.groups(), 2);
        assert_eq!(a.names(), &[("word".to_string(), 2)]);
        let c = compile(b"(\\d+)-(?<word>\\w+)", opts("")).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
    }

    #[test]
    fn compile_errors_name_the_pattern() {
        let error = |p: &[u8]| compile(p, Options::default()).err().unwrap();
        assert_eq!(error(b"(abc"), "pcre2_compile() failed: missing closing parenthesis in \"(abc\"");
        assert_eq!(error(b"a)b"), "pcre2_compile() failed: unmatched closing parenthesis in \"a)b\" at \")b\"");
    }
}
