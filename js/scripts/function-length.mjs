// Fails when a function in js/src is longer than the limit (default 150 lines), naming
// each one with its file, line and length. Usage: node scripts/function-length.mjs [limit]
// `--report` lists the longest functions instead of checking.
import ts from "typescript";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const srcDir = join(root, "src");
const args = process.argv.slice(2);
const report = args.includes("--report");
const limit = Number(args.find((a) => /^\d+$/.test(a)) ?? 150);

function tsFiles(dir) {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) return tsFiles(p);
    return p.endsWith(".ts") && !p.endsWith(".d.ts") ? [p] : [];
  });
}

/** A readable name for a function node: its own, or the variable / property it is assigned to. */
function nameOf(node, sf) {
  if (node.name) return node.name.getText(sf);
  if (ts.isConstructorDeclaration(node)) return `${node.parent.name?.getText(sf) ?? "class"}.constructor`;
  const p = node.parent;
  if (p && (ts.isVariableDeclaration(p) || ts.isPropertyAssignment(p) || ts.isPropertyDeclaration(p)) && p.name) {
    return p.name.getText(sf);
  }
  return "(anonymous)";
}

const functions = [];
for (const file of tsFiles(srcDir)) {
  const sf = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.ES2022, true);
  const visit = (node) => {
    if (ts.isFunctionLike(node) && "body" in node && node.body) {
      const start = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line;
      const end = sf.getLineAndCharacterOfPosition(node.getEnd()).line;
      functions.push({ file: relative(root, file), line: start + 1, name: nameOf(node, sf), lines: end - start + 1 });
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
}
functions.sort((a, b) => b.lines - a.lines);

if (report) {
  for (const f of functions.slice(0, 10)) console.log(`${f.lines}\t${f.name}\t${f.file}:${f.line}`);
} else {
  const long = functions.filter((f) => f.lines > limit);
  for (const f of long) {
    console.error(`${f.file}:${f.line}: function ${f.name} is ${f.lines} lines long (limit ${limit}); split it`);
  }
  if (long.length) process.exit(1);
  console.log(`${functions.length} functions, the longest ${functions[0]?.lines ?? 0} lines (${functions[0]?.name}); limit ${limit}`);
}
