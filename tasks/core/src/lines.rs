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
        let mut from = 0;
        while from < complete {
            let end = memchr::memchr(b'\n', &block[from..complete]).map_or(complete, |i| from + i);
            each(&block[from..end])?;
            from = end + 1;
        }
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
}
