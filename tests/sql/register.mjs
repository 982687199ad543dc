// dt-sql-parser is published for bundlers (extensionless ES module imports): resolve them for Node.
import { register } from 'node:module';

register('./resolve.mjs', import.meta.url);
