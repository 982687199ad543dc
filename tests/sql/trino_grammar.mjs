// Checks SQL statements against Trino's grammar (the ANTLR grammar of Trino's parser, as shipped
// by the npm package dt-sql-parser). Reads a JSON array of {name, sql} on stdin; prints a JSON
// array of {name, errors} (empty errors: the statement parses). dt-sql-parser is looked up under
// $BITACORA_NODE_DIR/node_modules (tests/run.sh installs it there).
//
//   node --import ./register.mjs trino_grammar.mjs < statements.json
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const nodeDir = process.env.BITACORA_NODE_DIR || '.';
const entry = join(nodeDir, 'node_modules', 'dt-sql-parser', 'dist', 'index.js');
const { TrinoSQL } = await import(pathToFileURL(entry).href);

const input = await new Promise((resolve, reject) => {
  let text = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk) => { text += chunk; });
  process.stdin.on('end', () => resolve(text));
  process.stdin.on('error', reject);
});
const parser = new TrinoSQL();
const out = JSON.parse(input).map(({ name, sql }) => ({
  name,
  errors: parser.validate(sql).map((e) => `${e.startLine}:${e.startColumn}: ${e.message}`),
}));
process.stdout.write(JSON.stringify(out));
