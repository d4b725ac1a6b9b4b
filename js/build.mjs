// Bundles every widget entry js/src/<name>.ts into one ES module,
// repwidgets/static/<name>.js, and its styles (src/lib/theme.css, then src/<name>.css)
// into repwidgets/static/<name>.css, which the widget ships as its _css (anywidget puts
// it where the widget renders: the page's head, or the shadow root in marimo).
// Usage: node build.mjs [--watch]
import * as esbuild from "esbuild";
import { existsSync, readdirSync, readFileSync, statSync, mkdirSync, watch, writeFileSync } from "node:fs";
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

/** Write static/<name>.css for every entry; fails when an entry has no <name>.css. */
async function buildCss() {
  const theme = readFileSync(join(srcDir, "lib", "theme.css"), "utf8");
  for (const entry of entries) {
    const name = basename(entry, ".ts");
    const own = join(srcDir, `${name}.css`);
    if (!existsSync(own)) throw new Error(`${own} is missing: every widget entry has its CSS file`);
    const { code } = await esbuild.transform(`${theme}\n${readFileSync(own, "utf8")}`, {
      loader: "css",
      minify: true,
      legalComments: "none",
    });
    writeFileSync(join(outDir, `${name}.css`), code);
  }
}

if (process.argv.includes("--watch")) {
  const ctx = await esbuild.context({ ...options, logLevel: "info" });
  await ctx.watch();
  await buildCss();
  watch(srcDir, { recursive: true }, (_event, file) => {
    if (file && file.endsWith(".css")) buildCss().catch((e) => console.error(e.message));
  });
  console.log(`watching ${srcDir} -> ${outDir}`);
} else {
  await esbuild.build(options);
  await buildCss();
  for (const entry of entries) {
    for (const ext of [".js", ".css"]) {
      const out = join(outDir, basename(entry).replace(/\.ts$/, ext));
      console.log(`${out}  ${(statSync(out).size / 1024).toFixed(1)} KiB`);
    }
  }
}
