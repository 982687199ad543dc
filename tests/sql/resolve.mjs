// A module resolve hook: a relative import without an extension is tried as `.js`, then `/index.js`.
export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (e) {
    if (!specifier.startsWith('.')) throw e;
    for (const suffix of ['.js', '/index.js']) {
      try {
        return await next(specifier + suffix, context);
      } catch {
        // the next candidate
      }
    }
    throw e;
  }
}
