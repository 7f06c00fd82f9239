// The GGUF tokenizer and chat template of SmolLM2-135M-Instruct against llama.cpp (node-llama-cpp):
// token ids equal on a corpus of Unicode, code, digits, whitespace runs and special tokens, with
// and without special-token parsing; decoding equal to llama.cpp's detokenizer; round trips;
// streaming decode never splits a UTF-8 character.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { readGguf } from "../src/models/gguf.ts";
import type { GgufTokenizer } from "../src/models/gguf-tokenizer.ts";
import { type ChatTemplate, defaultModelPath, loadTokenizer } from "../src/models/text-model.ts";
import { loadReference, type Reference } from "./support/llama-cpp.ts";

const corpus = [
  "Hello, world!",
  "café naïve résumé façade Ünïcödé ÀÉÎÕÜ ß ẞ œuvre",
  "日本語のテキストと中文字符，还有标点。한국어 문장도 있습니다.",
  "emoji 😀👍🏽🇫🇷 👨‍👩‍👧‍👦 ❤️ 🙂🙂🙂   🙂",
  "combining: e\u0301 a\u0308 n\u0303 o\u0302\u0323 Z\u0351\u0352\u0353",
  "Привет, мир! Ελληνικά. مرحبا بالعالم. नमस्ते दुनिया. שלום",
  "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
  "const x = { a: [1, 2, 3], 'b': \"s\" }; // comment\nfor (let i = 0; i < 10; i++) x.a.push(i ** 2);",
  "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); return 0; }",
  "12345678901234567890 3.14159265358979 1,000,000.00 -42 +7 1e-10 0x1F 2024-12-01T08:30:00Z",
  "full-width １２３４ superscripts x² y³ fractions ½ ¾ roman Ⅻ arabic-indic ٣٤٥ devanagari ४२",
  "a  b   c    d\t\te\t \tf\n\n\ng \n \n h   \r\n i\r\r\n",
  "   leading and trailing spaces   ",
  "\t\ttabs only\t\t",
  " ",
  "\n",
  "x",
  "it's we're they'll I'd you've she'S IT'S",
  "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
  "<|endoftext|><repo_name>lanes<file_sep>src/index.ts<filename>a.py<gh_stars>10",
  "text<|im_end|>more <|im_start|> spaced <|im_end|>",
  "<|im_start|<|im_end|>> broken <|im_start specials",
  "URLs https://example.com/path?q=1&r=2#frag and emails a.b@c.org",
  "Mixed: naïve_café123 日本2024年 🙂x🙂 \u00a0nbsp\u2003emspace\u200bzwsp",
  readFileSync(join(import.meta.dir, "fixtures", "declaration-of-independence.txt"), "utf8"),
];

let ref: Reference;
let tokenizer: GgufTokenizer;
let template: ChatTemplate;

beforeAll(async () => {
  ({ tokenizer, template } = loadTokenizer(defaultModelPath()));
  ref = await loadReference(defaultModelPath());
}, 120_000);
afterAll(async () => {
  await ref?.dispose();
});

describe("GGUF tokenizer against llama.cpp", () => {
  test("token ids equal on the whole corpus, special tokens parsed and not", () => {
    const mismatches: string[] = [];
    let tokens = 0;
    for (const special of [false, true]) {
      for (const text of corpus) {
        const expected = ref.tokenize(text, special);
        const ours = tokenizer.encode(text, { special });
        tokens += expected.length;
        if (ours.length !== expected.length || ours.some((id, i) => id !== expected[i]))
          mismatches.push(`${JSON.stringify(text.slice(0, 60))} special=${special}: llama.cpp [${expected.join(",")}] lanes [${ours.join(",")}]`);
      }
    }
    expect(mismatches).toEqual([]);
    expect(tokens).toBeGreaterThan(3000);
  });

  test("special-token text is one token only when parsed as special", () => {
    const chat = "<|im_start|>user\nhi<|im_end|>";
    const parsed = tokenizer.encode(chat, { special: true });
    expect(parsed[0]).toBe(1);
    expect(parsed.at(-1)).toBe(2);
    expect(tokenizer.encode(chat)).not.toContain(1);
    expect(tokenizer.stopIds).toEqual([0, 2]);
    expect(tokenizer.vocabSize).toBe(49152);
  });

  test("decoding equals llama.cpp's detokenizer (special tokens rendered, or skipped)", () => {
    for (const text of corpus) {
      const ids = ref.tokenize(text, true);
      expect(tokenizer.decode(ids)).toBe(ref.detokenize(ids, true));
      expect(tokenizer.decode(ids, { skipSpecial: true })).toBe(ref.detokenize(ids, false));
    }
  });

  test("round trip: decode(encode(text)) is the text", () => {
    for (const text of corpus) {
      expect(tokenizer.decode(tokenizer.encode(text))).toBe(text);
      expect(tokenizer.decode(tokenizer.encode(text, { special: true }))).toBe(text);
    }
    expect(tokenizer.encode("")).toEqual([]);
    expect(tokenizer.decode([])).toBe("");
  });

  test("streaming decode gives whole characters only and the same text", () => {
    for (const text of corpus) {
      const ids = tokenizer.encode(text, { special: true });
      const d = tokenizer.streamDecoder();
      let out = "";
      for (const id of ids) {
        const piece = d.push(id);
        expect(piece).not.toContain("\uFFFD");
        out += piece;
      }
      out += d.flush();
      expect(out).toBe(text);
    }
  });

  test("streaming decode holds back a character split across byte tokens", () => {
    // GPT-2's byte-level alphabet: printable Latin-1 bytes stand for themselves, the others for 256 + n.
    const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    const byteChar = (b: number) => {
      let n = 0;
      for (let c = 0; c < b; c++) if (!printable(c)) n++;
      return String.fromCodePoint(printable(b) ? b : 256 + n);
    };
    const vocab = readGguf(defaultModelPath(), { tensorData: false }).metadata.get("tokenizer.ggml.tokens")!.value as string[];
    const ids = [...new TextEncoder().encode("🙂")].map((b) => vocab.indexOf(byteChar(b)));
    expect(ids.every((id) => id >= 0)).toBe(true);
    const d = tokenizer.streamDecoder();
    expect(ids.map((id) => d.push(id))).toEqual(["", "", "", "🙂"]);
    expect(d.push(ids[0]!)).toBe("");
    expect(d.flush()).toBe("\uFFFD");
  });

  test("an id outside the vocabulary is a RangeError", () => {
    expect(() => tokenizer.decode([49152])).toThrow(RangeError);
    expect(() => tokenizer.decode([-1])).toThrow(RangeError);
  });
});

describe("chat template", () => {
  test("renders ChatML with the model's default system prompt and the generation prompt", () => {
    const user = template.apply([{ role: "user", content: "Hi there" }], { addGenerationPrompt: true });
    expect(user).toBe(
      "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n" +
        "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    );
    const conversation = template.apply([
      { role: "system", content: "Be brief." },
      { role: "user", content: "2+2?" },
      { role: "assistant", content: "4" },
      { role: "user", content: "and 3+3?" },
    ]);
    expect(conversation).toBe(
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\nand 3+3?<|im_end|>\n",
    );
  });
});
