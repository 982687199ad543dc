//! Reading NDJSON a block at a time, looking at each line where it lies.

use std::io::{self, Read};

/// A line as [`for_each_bounded_line`] hands it over (without its `\n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// A line of at most `max_line` bytes, whole.
    Whole(&'a [u8]),
    /// A longer line: its first `max_line` bytes, and its whole length. The rest was read and
    /// counted, never buffered.
    Long { head: &'a [u8], len: u64 },
}

/// Calls `each` with every line of `reader` (without its `\n`; the last line may lack one).
/// `block` is reused between calls: it is filled `block.len()` bytes at a time (at least
/// `min_block`), only a line cut by a block's end is moved to the front of the next one, and it
/// grows when one line is longer than it. Read errors go through `io_err`.
pub fn for_each_line<E>(
    reader: &mut dyn Read,
    block: &mut Vec<u8>,
    min_block: usize,
    mut each: impl FnMut(&[u8]) -> Result<(), E>,
    io_err: impl Fn(io::Error) -> E,
) -> Result<(), E> {
    for_each_chunk(
        reader,
        block,
        min_block,
        usize::MAX,
        io_err,
        |piece| match piece {
            Piece::Lines(chunk) => split_lines(chunk, |from, end| each(&chunk[from..end])),
            // Never with an unbounded line; the head is all there is.
            Piece::Long { head, .. } => each(head),
        },
    )
}

/// [`for_each_line`] with lines of at most `max_line` bytes held in memory: a longer line is
/// handed over as [`Line::Long`] (its head and length) and the next line follows. `block` never
/// grows beyond the largest of its size, `min_block` and `max_line + min_block` bytes, whatever
/// the input (a file without newlines, a device).
pub fn for_each_bounded_line<E>(
    reader: &mut dyn Read,
    block: &mut Vec<u8>,
    min_block: usize,
    max_line: usize,
    mut each: impl FnMut(Line<'_>) -> Result<(), E>,
    io_err: impl Fn(io::Error) -> E,
) -> Result<(), E> {
    let max_line = max_line.max(1);
    for_each_chunk(
        reader,
        block,
        min_block,
        max_line,
        io_err,
        |piece| match piece {
            Piece::Lines(chunk) => split_lines(chunk, |from, end| {
                if end - from > max_line {
                    let head = &chunk[from..from + max_line];
                    each(Line::Long {
                        head,
                        len: (end - from) as u64,
                    })
                } else {
                    each(Line::Whole(&chunk[from..end]))
                }
            }),
            Piece::Long { head, len } => each(Line::Long { head, len }),
        },
    )
}

/// [`for_each_line`] for text: each line is `Ok` as a `&str`, or `Err` with its bytes when it is
/// not valid UTF-8. Blocks are validated whole (one fast pass instead of one call per line); a
/// block with an invalid line is validated line by line.
pub fn for_each_text_line<E>(
    reader: &mut dyn Read,
    block: &mut Vec<u8>,
    min_block: usize,
    mut each: impl FnMut(std::result::Result<&str, &[u8]>) -> Result<(), E>,
    io_err: impl Fn(io::Error) -> E,
) -> Result<(), E> {
    for_each_chunk(reader, block, min_block, usize::MAX, io_err, |piece| {
        let chunk = match piece {
            Piece::Lines(chunk) => chunk,
            // Never with an unbounded line; the head is all there is.
            Piece::Long { head, .. } => return each(std::str::from_utf8(head).map_err(|_| head)),
        };
        match std::str::from_utf8(chunk) {
            // `\n` is a character boundary: every line of valid text is valid text.
            Ok(text) => split_lines(chunk, |from, end| each(Ok(&text[from..end]))),
            Err(_) => split_lines(chunk, |from, end| {
                let line = &chunk[from..end];
                each(std::str::from_utf8(line).map_err(|_| line))
            }),
        }
    })
}

/// The byte range of every line of `chunk` (without its `\n`; no empty line after a final `\n`).
/// A `\n` is a character boundary in UTF-8: the ranges of valid text slice it into valid text.
pub fn line_ranges(chunk: &[u8]) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let mut from = 0;
    memchr::memchr_iter(b'\n', chunk)
        .chain((!chunk.is_empty() && !chunk.ends_with(b"\n")).then_some(chunk.len()))
        .map(move |end| {
            let line = from..end;
            from = end + 1;
            line
        })
}

/// Calls `each` with the byte range of every line of `chunk`.
fn split_lines<E>(
    chunk: &[u8],
    mut each: impl FnMut(usize, usize) -> Result<(), E>,
) -> Result<(), E> {
    line_ranges(chunk).try_for_each(|r| each(r.start, r.end))
}

/// What [`for_each_chunk`] hands over.
enum Piece<'a> {
    /// A run of complete lines (the rest of the input at its end).
    Lines(&'a [u8]),
    /// A line longer than the block could hold: its first `max_line` bytes and its length.
    Long { head: &'a [u8], len: u64 },
}

/// Fills `block` from `reader` and calls `piece` with each run of complete lines (the rest of the
/// input at its end). A line that fills the block once the block is longer than `max_line` is
/// handed over as its head, the rest of it read and counted in the block's tail.
fn for_each_chunk<E>(
    reader: &mut dyn Read,
    block: &mut Vec<u8>,
    min_block: usize,
    max_line: usize,
    io_err: impl Fn(io::Error) -> E,
    mut piece: impl FnMut(Piece<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let min_block = min_block.max(1);
    if block.len() < min_block {
        block.resize(min_block, 0);
    }
    let (mut filled, mut eof) = (0usize, false);
    loop {
        while !eof && filled < block.len() {
            match read(reader, &mut block[filled..], &io_err)? {
                0 => eof = true,
                n => filled += n,
            }
        }
        let complete = if eof {
            filled
        } else {
            match memchr::memrchr(b'\n', &block[..filled]) {
                Some(i) => i + 1,
                // The block is one unfinished line longer than `max_line`.
                None if block.len() > max_line => {
                    let (rest, done) = skip_long_line(reader, block, max_line, &io_err)?;
                    let len = (filled as u64).saturating_add(rest);
                    piece(Piece::Long {
                        head: &block[..max_line],
                        len,
                    })?;
                    filled = match done {
                        Some(after) => {
                            let n = after.len();
                            block.copy_within(after, 0);
                            n
                        }
                        None => return Ok(()),
                    };
                    continue;
                }
                None => {
                    // Doubles, up to what tells a line longer than `max_line` from one that is not.
                    let grown = block
                        .len()
                        .saturating_mul(2)
                        .min(max_line.saturating_add(min_block));
                    block.resize(grown, 0);
                    continue;
                }
            }
        };
        piece(Piece::Lines(&block[..complete]))?;
        block.copy_within(complete..filled, 0);
        filled -= complete;
        if eof {
            return Ok(());
        }
    }
}

/// Reads the rest of a line whose first `block.len()` bytes fill `block`, through the block's
/// bytes after `max_line` (its head stays in front): the number of bytes read before its `\n`, and
/// the range of `block` read after the `\n` (`None` at the end of the input).
fn skip_long_line<E>(
    reader: &mut dyn Read,
    block: &mut [u8],
    max_line: usize,
    io_err: &impl Fn(io::Error) -> E,
) -> Result<(u64, Option<std::ops::Range<usize>>), E> {
    let mut rest = 0u64;
    loop {
        let n = read(reader, &mut block[max_line..], io_err)?;
        if n == 0 {
            return Ok((rest, None));
        }
        let read = &block[max_line..max_line + n];
        match memchr::memchr(b'\n', read) {
            Some(i) => return Ok((rest + i as u64, Some(max_line + i + 1..max_line + n))),
            None => rest += n as u64,
        }
    }
}

/// One `read` call, retried when interrupted.
fn read<E>(
    reader: &mut dyn Read,
    buf: &mut [u8],
    io_err: &impl Fn(io::Error) -> E,
) -> Result<usize, E> {
    loop {
        match reader.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn line_ranges_are_the_lines_before_each_newline() {
        for text in ["", "\n", "a", "a\n", "a\nb", "\n\na\r\né\n\nb\n", "ü\n€"] {
            let ours: Vec<&str> = line_ranges(text.as_bytes()).map(|r| &text[r]).collect();
            let mut std: Vec<&str> = text.split('\n').collect();
            if text.is_empty() || text.ends_with('\n') {
                std.pop();
            }
            assert_eq!(ours, std, "{text:?}");
        }
    }

    use super::*;

    fn lines(input: &[u8], block: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        for_each_line(
            &mut &input[..],
            &mut buf,
            block,
            |l| {
                out.push(String::from_utf8_lossy(l).into_owned());
                Ok::<(), io::Error>(())
            },
            |e| e,
        )
        .unwrap();
        out
    }

    #[test]
    fn splits_across_blocks_and_grows_for_long_lines() {
        let text = b"a\nbb\n\nccccccccccccc\ndd";
        for block in [1, 2, 3, 4, 64] {
            assert_eq!(
                lines(text, block),
                ["a", "bb", "", "ccccccccccccc", "dd"],
                "block {block}"
            );
        }
        assert_eq!(lines(b"x\n", 4), ["x"]);
        assert!(lines(b"", 4).is_empty());
    }

    /// Every line, as `(text, length)`: a long line's text is its head.
    fn bounded(input: &[u8], block: usize, max: usize) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for_each_bounded_line(
            &mut &input[..],
            &mut Vec::new(),
            block,
            max,
            |l| {
                out.push(match l {
                    Line::Whole(l) => (String::from_utf8_lossy(l).into_owned(), l.len() as u64),
                    Line::Long { head, len } => {
                        assert_eq!(head.len(), max);
                        (String::from_utf8_lossy(head).into_owned(), len)
                    }
                });
                Ok::<(), io::Error>(())
            },
            |e| e,
        )
        .unwrap();
        out
    }

    #[test]
    fn bounded_lines_hand_long_ones_over_as_their_head_and_length() {
        let text = b"a\nbbbbb\n\ncccccccccccccc\ndddd\neeeeeee";
        for block in [1, 2, 3, 4, 5, 7, 64] {
            assert_eq!(
                bounded(text, block, 4),
                [
                    ("a".into(), 1),
                    ("bbbb".into(), 5),
                    (String::new(), 0),
                    ("cccc".into(), 14),
                    ("dddd".into(), 4),
                    ("eeee".into(), 7),
                ],
                "block {block}"
            );
            assert_eq!(bounded(b"xxxxx\n", block, 4), [("xxxx".into(), 5)]);
            assert_eq!(bounded(b"xxxx\n", block, 4), [("xxxx".into(), 4)]);
        }
    }

    /// Yields `left` bytes of `a`, a few at a time, without holding them.
    struct Endless {
        left: u64,
    }

    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.left.min(1 << 20) as usize);
            buf[..n].fill(b'a');
            self.left -= n as u64;
            Ok(n)
        }
    }

    #[test]
    fn a_line_without_end_keeps_the_block_bounded() {
        const LONG: u64 = 64 << 20;
        const MAX: usize = 256 << 10;
        for min_block in [4 << 20, 64 << 10] {
            let mut reader = Endless { left: LONG }.chain(&b"\nnext\n\nlast"[..]);
            let mut block = Vec::new();
            let mut seen = Vec::new();
            for_each_bounded_line(
                &mut reader,
                &mut block,
                min_block,
                MAX,
                |l| {
                    seen.push(match l {
                        Line::Whole(l) => (String::from_utf8_lossy(l).into_owned(), None),
                        Line::Long { head, len } => {
                            assert!(head.iter().all(|&b| b == b'a'));
                            (format!("{} bytes of head", head.len()), Some(len))
                        }
                    });
                    Ok::<(), io::Error>(())
                },
                |e| e,
            )
            .unwrap();
            assert_eq!(
                seen,
                [
                    (format!("{MAX} bytes of head"), Some(LONG)),
                    ("next".into(), None),
                    (String::new(), None),
                    ("last".into(), None),
                ]
            );
            assert!(
                block.capacity() <= (4 << 20).max(2 * (MAX + min_block)),
                "block of {} bytes",
                block.capacity()
            );
        }
        // The same input without a bound grows the block past the line.
        let mut block = Vec::new();
        let mut reader = Endless { left: LONG }.chain(&b"\n"[..]);
        for_each_line(
            &mut reader,
            &mut block,
            4 << 20,
            |_| Ok::<(), io::Error>(()),
            |e| e,
        )
        .unwrap();
        assert!(block.len() as u64 > LONG);
    }

    #[test]
    fn text_lines_are_validated_and_invalid_ones_named() {
        let input = b"caf\xc3\xa9\nbad \xff line\n\nok\n\xc3";
        for block in [1, 3, 8, 64] {
            let mut seen = Vec::new();
            for_each_text_line(
                &mut &input[..],
                &mut Vec::new(),
                block,
                |l| {
                    seen.push(l.map(str::to_string).map_err(<[u8]>::to_vec));
                    Ok::<(), io::Error>(())
                },
                |e| e,
            )
            .unwrap();
            assert_eq!(
                seen,
                vec![
                    Ok("café".to_string()),
                    Err(b"bad \xff line".to_vec()),
                    Ok(String::new()),
                    Ok("ok".to_string()),
                    Err(b"\xc3".to_vec()),
                ],
                "block {block}"
            );
        }
    }
}
