//! Reading NDJSON a block at a time, looking at each line where it lies.

use std::io::{self, Read};

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
    for_each_chunk(reader, block, min_block, io_err, |chunk| {
        split_lines(chunk, |from, end| each(&chunk[from..end]))
    })
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
    for_each_chunk(reader, block, min_block, io_err, |chunk| {
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

/// Calls `each` with the byte range of every line of `chunk`.
fn split_lines<E>(
    chunk: &[u8],
    mut each: impl FnMut(usize, usize) -> Result<(), E>,
) -> Result<(), E> {
    let mut from = 0;
    while from < chunk.len() {
        let end = memchr::memchr(b'\n', &chunk[from..]).map_or(chunk.len(), |i| from + i);
        each(from, end)?;
        from = end + 1;
    }
    Ok(())
}

/// Fills `block` from `reader` and calls `chunk` with each run of complete lines (the rest of the
/// input at its end).
fn for_each_chunk<E>(
    reader: &mut dyn Read,
    block: &mut Vec<u8>,
    min_block: usize,
    io_err: impl Fn(io::Error) -> E,
    mut chunk: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    if block.len() < min_block {
        block.resize(min_block, 0);
    }
    let (mut filled, mut eof) = (0usize, false);
    loop {
        while !eof && filled < block.len() {
            match reader.read(&mut block[filled..]) {
                Ok(0) => eof = true,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err(e)),
            }
        }
        let complete = if eof {
            filled
        } else {
            match memchr::memrchr(b'\n', &block[..filled]) {
                Some(i) => i + 1,
                None => {
                    let grown = block.len() * 2;
                    block.resize(grown, 0);
                    continue;
                }
            }
        };
        chunk(&block[..complete])?;
        block.copy_within(complete..filled, 0);
        filled -= complete;
        if eof {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
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
