// Binary codecs shared by all widgets.
//
// Python (repwidgets/widgets/_transport.py) sends arrays as
//   {dtype: "float32", shape: [n, m], buffer: <bytes>}
// and batches of encoded images as one buffer plus
//   {offsets: [0, a, b, ...], mimes: ["image/png", ...]}.
// Jupyter delivers bytes to the front end as DataView (sometimes ArrayBuffer or a
// typed array, depending on the host); `asDataView` accepts all three.

export type DType = "float32" | "float64" | "int8" | "uint8" | "int16" | "uint16" | "int32" | "uint32";

export type TypedArray =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array;

type TypedArrayCtor = {
  new (length: number): TypedArray;
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): TypedArray;
  readonly BYTES_PER_ELEMENT: number;
};

const CTORS: Record<DType, TypedArrayCtor> = {
  float32: Float32Array,
  float64: Float64Array,
  int8: Int8Array,
  uint8: Uint8Array,
  int16: Int16Array,
  uint16: Uint16Array,
  int32: Int32Array,
  uint32: Uint32Array,
};

const GETTERS: Record<DType, (v: DataView, offset: number) => number> = {
  float32: (v, o) => v.getFloat32(o, true),
  float64: (v, o) => v.getFloat64(o, true),
  int8: (v, o) => v.getInt8(o),
  uint8: (v, o) => v.getUint8(o),
  int16: (v, o) => v.getInt16(o, true),
  uint16: (v, o) => v.getUint16(o, true),
  int32: (v, o) => v.getInt32(o, true),
  uint32: (v, o) => v.getUint32(o, true),
};

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** An n-dimensional array: a flat typed array in C order plus its shape. */
export interface NDArray<T extends TypedArray = TypedArray> {
  data: T;
  dtype: DType;
  shape: number[];
}

/** Metadata of an encoded array as sent by Python; `buffer` holds the bytes. */
export interface ArrayMeta {
  dtype: string;
  shape: number[];
  buffer?: unknown;
}

/** Turn whatever binary form the host delivered into a DataView. */
export function asDataView(buf: unknown): DataView {
  if (buf instanceof DataView) return buf;
  if (buf instanceof ArrayBuffer) return new DataView(buf);
  if (ArrayBuffer.isView(buf)) return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  throw new TypeError(`expected binary data (DataView/ArrayBuffer), got ${typeof buf}`);
}

export function isDType(s: string): s is DType {
  return Object.prototype.hasOwnProperty.call(CTORS, s);
}

/**
 * Decode little-endian array bytes into a typed array with dtype and shape.
 * Views the bytes without copying when they are aligned; copies otherwise.
 */
export function decodeArray(meta: ArrayMeta, buf?: unknown): NDArray {
  const { dtype, shape } = meta;
  if (!isDType(dtype)) throw new TypeError(`unsupported dtype ${JSON.stringify(dtype)}`);
  const view = asDataView(buf ?? meta.buffer);
  const Ctor = CTORS[dtype];
  const size = shape.reduce((a, b) => a * b, 1);
  const nbytes = size * Ctor.BYTES_PER_ELEMENT;
  if (view.byteLength !== nbytes) {
    throw new RangeError(
      `array of dtype ${dtype} and shape [${shape.join(", ")}] needs ${nbytes} bytes, got ${view.byteLength}`,
    );
  }
  let data: TypedArray;
  if (LITTLE_ENDIAN && view.byteOffset % Ctor.BYTES_PER_ELEMENT === 0) {
    data = new Ctor(view.buffer, view.byteOffset, size);
  } else if (LITTLE_ENDIAN) {
    const copy = new Uint8Array(nbytes);
    copy.set(new Uint8Array(view.buffer, view.byteOffset, nbytes));
    data = new Ctor(copy.buffer, 0, size);
  } else {
    data = new Ctor(size);
    const get = GETTERS[dtype];
    for (let i = 0; i < size; i++) data[i] = get(view, i * Ctor.BYTES_PER_ELEMENT);
  }
  return { data, dtype, shape: [...shape] };
}

/** Row `i` of a 2-D array (a view, no copy). */
export function row<T extends TypedArray>(arr: NDArray<T>, i: number): T {
  if (arr.shape.length !== 2) throw new RangeError(`row() needs a 2-D array, got shape [${arr.shape}]`);
  const m = arr.shape[1];
  return arr.data.subarray(i * m, (i + 1) * m) as T;
}

/** Metadata of a batch of encoded images packed into one buffer. */
export interface ImageBatchMeta {
  offsets: number[];
  mimes: string[];
}

/** One image of a batch: its bytes as a Blob (no copy of the underlying buffer). */
export function sliceImages(meta: ImageBatchMeta, buf: unknown): Blob[] {
  const view = asDataView(buf);
  const { offsets, mimes } = meta;
  if (offsets.length !== mimes.length + 1) {
    throw new RangeError(`image batch has ${mimes.length} images but ${offsets.length} offsets`);
  }
  if (offsets[offsets.length - 1] > view.byteLength) {
    throw new RangeError(
      `image batch offsets end at ${offsets[offsets.length - 1]} but the buffer has ${view.byteLength} bytes`,
    );
  }
  const out: Blob[] = [];
  for (let i = 0; i < mimes.length; i++) {
    const start = offsets[i];
    const end = offsets[i + 1];
    if (end < start) throw new RangeError(`image ${i}: offsets decrease (${start} > ${end})`);
    const bytes = new Uint8Array(view.buffer, view.byteOffset + start, end - start);
    out.push(new Blob([bytes as Uint8Array<ArrayBuffer>], { type: safeImageMime(mimes[i]) }));
  }
  return out;
}

/** Decode a batch into Blob URLs (revoke them with URL.revokeObjectURL when done). */
export function decodeImageBatch(meta: ImageBatchMeta, buf: unknown): string[] {
  return sliceImages(meta, buf).map((b) => URL.createObjectURL(b));
}

/** A Blob URL for one encoded image (revoke it with URL.revokeObjectURL when done). */
export function bytesToUrl(buf: unknown, mime: string): string {
  const view = asDataView(buf);
  const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
  return URL.createObjectURL(new Blob([bytes as Uint8Array<ArrayBuffer>], { type: safeImageMime(mime) }));
}

const RASTER = new Set(["image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/avif"]);

/** Only raster image types are passed on; anything else becomes opaque bytes. */
export function safeImageMime(mime: string): string {
  return RASTER.has(mime) ? mime : "application/octet-stream";
}
