import { describe, expect, it } from "vitest";
import { decodeArray, row, safeImageMime, sliceImages, asDataView } from "../src/lib/codec";

describe("decodeArray", () => {
  it("reads float32 with shape from a DataView", () => {
    const src = new Float32Array([1.5, -2, 3.25, 4, 5, 6]);
    const arr = decodeArray({ dtype: "float32", shape: [2, 3] }, new DataView(src.buffer));
    expect(arr.shape).toEqual([2, 3]);
    expect(Array.from(arr.data)).toEqual([1.5, -2, 3.25, 4, 5, 6]);
    expect(Array.from(row(arr, 1))).toEqual([4, 5, 6]);
  });

  it("reads int32 and uint8, and the buffer from meta", () => {
    const ints = new Int32Array([-7, 0, 2 ** 30]);
    expect(Array.from(decodeArray({ dtype: "int32", shape: [3], buffer: new DataView(ints.buffer) }).data)).toEqual([
      -7, 0, 2 ** 30,
    ]);
    const bytes = new Uint8Array([1, 0, 1, 1]);
    const b = decodeArray({ dtype: "uint8", shape: [2, 2] }, bytes);
    expect(b.data).toBeInstanceOf(Uint8Array);
    expect(Array.from(b.data)).toEqual([1, 0, 1, 1]);
  });

  it("copies unaligned data instead of failing", () => {
    const raw = new Uint8Array(1 + 8);
    new DataView(raw.buffer).setFloat32(1, 0.5, true);
    new DataView(raw.buffer).setFloat32(5, -8, true);
    const arr = decodeArray({ dtype: "float32", shape: [2] }, new DataView(raw.buffer, 1, 8));
    expect(Array.from(arr.data)).toEqual([0.5, -8]);
  });

  it("rejects wrong sizes and unknown dtypes", () => {
    expect(() => decodeArray({ dtype: "float32", shape: [3] }, new DataView(new ArrayBuffer(8)))).toThrow(/needs 12 bytes/);
    expect(() => decodeArray({ dtype: "int64", shape: [1] }, new DataView(new ArrayBuffer(8)))).toThrow(/unsupported dtype/);
    expect(() => asDataView("nope")).toThrow(TypeError);
  });
});

describe("image batches", () => {
  it("slices one buffer into blobs by offsets", async () => {
    const buf = new Uint8Array([1, 2, 3, 4, 5, 6]);
    const blobs = sliceImages({ offsets: [0, 2, 2, 6], mimes: ["image/png", "image/jpeg", "image/svg+xml"] }, new DataView(buf.buffer));
    expect(blobs.map((b) => b.size)).toEqual([2, 0, 4]);
    expect(blobs.map((b) => b.type)).toEqual(["image/png", "image/jpeg", "application/octet-stream"]);
    const bytes = await new Promise<ArrayBuffer>((resolve) => {
      const r = new FileReader();
      r.onload = () => resolve(r.result as ArrayBuffer);
      r.readAsArrayBuffer(blobs[2]);
    });
    expect(Array.from(new Uint8Array(bytes))).toEqual([3, 4, 5, 6]);
  });

  it("checks offsets against the buffer", () => {
    expect(() => sliceImages({ offsets: [0, 10], mimes: ["image/png"] }, new DataView(new ArrayBuffer(4)))).toThrow(/buffer has 4 bytes/);
    expect(() => sliceImages({ offsets: [0], mimes: ["image/png"] }, new DataView(new ArrayBuffer(4)))).toThrow(/offsets/);
  });

  it("only lets raster image types through", () => {
    expect(safeImageMime("image/webp")).toBe("image/webp");
    expect(safeImageMime("text/html")).toBe("application/octet-stream");
  });
});
