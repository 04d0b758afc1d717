// Runs GGUF files through the real llama.cpp (node-llama-cpp's prebuilt
// CPU build) and prints what a3's tests compare against a3's own forward
// pass. Usage: node llama_check.mjs JOB.json > OUT.json
//
// JOB.json: {"jobs": [{"model": "x.gguf",
//                      "score": [[ids...], ...],       // sequences to score
//                      "greedy": {"prompt": [ids], "n": N},
//                      "tokenize": ["text", ...],
//                      "ppl": {"seqs": [[ids]...]} or
//                             {"texts": ["..."], "seqlen": N}}]}  // summed
// OUT.json: {"results": [{"nll": [[per-token NLL of ids[1..]]...],
//                         "greedy": [ids], "tokens": [[ids]...],
//                         "ppl": {"nll_sum": x, "n_pred": n}}]}
//
// The KV cache is F32 (node-llama-cpp defaults to F16, which moves
// per-token values by up to ~1.6e-2 on these models) and one thread is
// used, so the numbers are llama.cpp's float32 CPU path. NLLs come from
// the full next-token distribution llama.cpp returns for each position.
import {readFileSync} from "node:fs";
import {getLlama} from "node-llama-cpp";

const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});

// One context sequence per model, cleared before each use.
async function scoreSeq(seq, ids) {
    await seq.clearHistory();
    {
        const input = ids.map((t, i) => i + 1 < ids.length ? [t, {generateNext: {probabilities: true}}] : t);
        const res = await seq.controlledEvaluate(input);
        const nll = [];
        for (let i = 0; i + 1 < ids.length; i++) {
            const p = res[i]?.next?.probabilities?.get(ids[i + 1]);
            nll.push(p > 0 ? -Math.log(p) : null);
        }
        return nll;
    }
}

async function greedy(seq, prompt, n) {
    await seq.clearHistory();
    {
        const out = [];
        let input = prompt;
        for (let i = 0; i < n; i++) {
            const res = await seq.controlledEvaluate(input.map((t, j) => j + 1 < input.length ? t : [t, {generateNext: {token: true}}]));
            const tok = res[input.length - 1].next.token;
            out.push(tok);
            input = [tok];
        }
        return out;
    }
}

const results = [];
for (const j of job.jobs) {
    const model = await llama.loadModel({modelPath: j.model});
    const ctx = await model.createContext({
        contextSize: j.context ?? 512, batchSize: j.context ?? 512, sequences: 1, threads: 1, flashAttention: false,
        experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
    });
    const seq = ctx.getSequence();
    const r = {};
    if (j.score) {
        r.nll = [];
        for (const s of j.score) r.nll.push(await scoreSeq(seq, s));
    }
    if (j.ppl) {
        // seqs: id sequences; or texts: each tokenized by llama.cpp with
        // BOS first and cut to seqlen (a3 eval's paragraphs protocol).
        let seqs = j.ppl.seqs ?? [];
        if (j.ppl.texts) {
            const bos = model.tokens.bos;
            seqs = j.ppl.texts.map(t => [...(bos != null ? [bos] : []), ...model.tokenize(t, false)].slice(0, j.ppl.seqlen));
        }
        let sum = 0, n = 0;
        for (const s of seqs) if (s.length >= 2) for (const x of await scoreSeq(seq, s)) sum += x, n++;
        r.ppl = {nll_sum: sum, n_pred: n};
    }
    if (j.greedy) r.greedy = await greedy(seq, j.greedy.prompt, j.greedy.n);
    if (j.tokenize) r.tokens = j.tokenize.map(t => Array.from(model.tokenize(t, false)));
    results.push(r);
    await ctx.dispose();
    await model.dispose();
}
process.stdout.write(JSON.stringify({results}));
await llama.dispose();
