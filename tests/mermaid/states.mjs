// Print, as JSON, the states each Mermaid state diagram defines (id -> descriptions), parsed
// by the real Mermaid parser: `node tests/mermaid/states.mjs FILE.mmd...`, one line a file.
// A label that escaped its quotes would show up here as states of its own.
import { readFileSync } from "node:fs";
import { JSDOM } from "jsdom";

const dom = new JSDOM("<!DOCTYPE html><body></body>", { pretendToBeVisual: true });
globalThis.window = dom.window;
globalThis.document = dom.window.document;
for (const key of ["DOMParser", "Element", "HTMLElement", "Node", "navigator", "getComputedStyle"]) {
  if (!(key in globalThis)) globalThis[key] = dom.window[key];
}
const { default: mermaid } = await import("mermaid");
mermaid.initialize({ startOnLoad: false });
for (const file of process.argv.slice(2)) {
  const diagram = await mermaid.mermaidAPI.getDiagramFromText(readFileSync(file, "utf8"));
  const db = diagram.db;
  if (typeof db.extract === "function" && typeof db.getRootDocV2 === "function") {
    db.extract(db.getRootDocV2());
  }
  const states = db.getStates();
  const out = {};
  for (const [id, state] of states instanceof Map ? states : Object.entries(states)) {
    out[id] = state.descriptions || [];
  }
  console.log(JSON.stringify(out));
  db.clear();
}
