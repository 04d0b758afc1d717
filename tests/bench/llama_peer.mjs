// llama_peer.mjs GGUF MODE THREADS N [PEERS_DIR]: llama.cpp (prebuilt, via
// node-llama-cpp from tests/peers) on the same model as a3, for make bench.
//   MODE decode:  a 4-token prompt, then N greedy tokens; prints the
//                 decoding rate over the N - 1 steps after the first token
//                 (the first includes the prompt).
//   MODE prefill: one evaluation of N token ids (batch = N); prints N / s.
// Token ids are a fixed pseudo-random sequence below 500, so any vocabulary
// works and a3 can be fed the same ids. One line on stdout:
//   llama.cpp MODE tokens_per_s=X threads=T n=N cpu_backend=NAME
import fs from "node:fs";
import path from "node:path";
import {pathToFileURL} from "node:url";

const [gguf, mode, threadsArg, nArg, peersArg] = process.argv.slice(2);
if (!gguf || !["decode", "prefill"].includes(mode)) {
    console.error("usage: llama_peer.mjs GGUF decode|prefill THREADS N [PEERS_DIR]");
    process.exit(2);
}
const threads = Number(threadsArg), n = Number(nArg);
const peers = peersArg ?? path.join(path.dirname(new URL(import.meta.url).pathname), "..", "peers");
const {getLlama, LlamaLogLevel} = await import(
    pathToFileURL(path.join(peers, "node_modules", "node-llama-cpp", "dist", "index.js")).href);

const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath: gguf, gpuLayers: 0});
// Which ggml CPU variant (llama.cpp's kernel for this CPU) was loaded.
const maps = fs.readFileSync("/proc/self/maps", "utf8");
const backend = (/libggml-cpu-([a-z0-9_]+)\.so/.exec(maps) ?? [null, "unknown"])[1];
const ids = [];
for (let i = 0, s = 12345; i < Math.max(n, 4); i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    ids.push(3 + (s % 497));
}
const ctxLen = mode === "prefill" ? n + 8 : n + 16;
const context = await model.createContext({contextSize: ctxLen, batchSize: mode === "prefill" ? n : 512,
                                           threads: {ideal: threads, min: threads}});
const seq = context.getSequence();
let rate;
if (mode === "prefill") {
    const t0 = performance.now();
    await seq.evaluateWithoutGeneratingNewTokens(ids.slice(0, n));
    rate = n / ((performance.now() - t0) / 1000);
} else {
    let k = 0, t1 = 0;
    for await (const tok of seq.evaluate(ids.slice(0, 4), {temperature: 0})) {
        void tok;
        if (++k === 1) t1 = performance.now();
        if (k >= n) break;
    }
    rate = (k - 1) / ((performance.now() - t1) / 1000);
}
console.log(`llama.cpp ${mode} tokens_per_s=${rate.toFixed(3)} threads=${threads} n=${n} cpu_backend=${backend}`);
await context.dispose();
await model.dispose();
await llama.dispose();
