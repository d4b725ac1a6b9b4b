// Bundles every widget entry js/src/*.ts into one ES module each:
// repwidgets/static/<name>.js (CSS is injected from the module itself).
// Usage: node build.mjs [--watch]
import * as esbuild from "esbuild";
import { readdirSync, statSync, mkdirSync } from "node:fs";
import { dirname, join, basename } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const srcDir = join(here, "src");
const outDir = join(here, "..", "repwidgets", "static");
const entries = readdirSync(srcDir)
  .filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))
  .map((f) => join(srcDir, f));

if (entries.length === 0) {
  console.error(`no widget entries found in ${srcDir}`);
  process.exit(1);
}
mkdirSync(outDir, { recursive: true });

const options = {
  entryPoints: entries,
  outdir: outDir,
  bundle: true,
  format: "esm",
  target: ["es2020"],
  minify: true,
  legalComments: "none",
  sourcemap: false,
  logLevel: "warning",
};

if (process.argv.includes("--watch")) {
  const ctx = await esbuild.context({ ...options, logLevel: "info" });
  await ctx.watch();
  console.log(`watching ${srcDir} -> ${outDir}`);
} else {
  await esbuild.build(options);
  for (const entry of entries) {
    const out = join(outDir, basename(entry).replace(/\.ts$/, ".js"));
    console.log(`${out}  ${(statSync(out).size / 1024).toFixed(1)} KiB`);
  }
}
