// The drawing page's preparation of a digit, step for step a port of prepare_pixels in mnist_cnn/digit_image.py,
// which stays the one definition: tests/test_web.py checks that both prepare the same drawings alike.
// Images are {height, width, data: Float64Array} in row-major order; grey levels in [0, 1], 0 black.

export const SETTINGS = {
  FIELD: 28,
  BOX: 20,
  WORKING_SIDE: 512,
  BACKGROUND_SIDE: 64,
  BACKGROUND_WINDOW: 11,
  COMPONENT_SIDE: 128,
  MIN_CONTRAST: 0.08,
  MIN_PIECE_SHARE: 0.08,
  MIN_INSIDE_PIECE: 4,
  MIN_INSIDE_SHARE: 0.01,
  MNIST_STROKE_WIDTH: 2.0,
};
const S = SETTINGS;

export class NoDigit extends Error {}

function image(height, width, fill = 0) {
  return { height, width, data: new Float64Array(height * width).fill(fill) };
}

function map(picture, f) {
  const out = image(picture.height, picture.width);
  for (let i = 0; i < out.data.length; i++) out.data[i] = f(picture.data[i], i);
  return out;
}

function sum(picture) {
  return picture.data.reduce((total, value) => total + value, 0);
}

// Python's round(): halves go to the even neighbour.
export function roundHalfEven(x) {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

// torch's adaptive pooling windows: output i covers [floor(i * in / out), ceil((i + 1) * in / out)).
function windows(inSize, outSize) {
  return Array.from({ length: outSize }, (_, i) => [Math.floor((i * inSize) / outSize), Math.ceil(((i + 1) * inSize) / outSize)]);
}

function adaptivePool(picture, height, width, reduce) {
  const rows = windows(picture.height, height);
  const columns = windows(picture.width, width);
  const out = image(height, width);
  rows.forEach(([top, bottom], r) => {
    columns.forEach(([left, right], c) => {
      const values = [];
      for (let y = top; y < bottom; y++) for (let x = left; x < right; x++) values.push(picture.data[y * picture.width + x]);
      out.data[r * width + c] = reduce(values);
    });
  });
  return out;
}

const mean = (values) => values.reduce((a, b) => a + b, 0) / values.length;
const largest = (values) => values.reduce((a, b) => Math.max(a, b), -Infinity);

export function shrink(picture, side) {
  const longer = Math.max(picture.height, picture.width);
  if (longer <= side) return picture;
  const scale = side / longer;
  const height = Math.max(1, roundHalfEven(picture.height * scale));
  const width = Math.max(1, roundHalfEven(picture.width * scale));
  return adaptivePool(picture, height, width, mean);
}

// A window of side around each pixel, edges repeated (replicate padding), reduced by reduce.
function slide(picture, side, reduce) {
  const half = Math.floor(side / 2);
  const out = image(picture.height, picture.width);
  for (let y = 0; y < picture.height; y++) {
    for (let x = 0; x < picture.width; x++) {
      const values = [];
      for (let dy = -half; dy <= half; dy++) {
        const row = Math.min(Math.max(y + dy, 0), picture.height - 1);
        for (let dx = -half; dx <= half; dx++) {
          const column = Math.min(Math.max(x + dx, 0), picture.width - 1);
          values.push(picture.data[row * picture.width + column]);
        }
      }
      out.data[y * picture.width + x] = reduce(values);
    }
  }
  return out;
}

// torch's bilinear interpolation with align_corners=False, without antialiasing.
function bilinear(picture, height, width) {
  const out = image(height, width);
  const source = (i, inSize, outSize) => {
    const position = Math.max((inSize / outSize) * (i + 0.5) - 0.5, 0);
    const low = Math.min(Math.floor(position), inSize - 1);
    return [low, Math.min(low + 1, inSize - 1), position - low];
  };
  for (let y = 0; y < height; y++) {
    const [top, bottom, dy] = source(y, picture.height, height);
    for (let x = 0; x < width; x++) {
      const [left, right, dx] = source(x, picture.width, width);
      const at = (row, column) => picture.data[row * picture.width + column];
      out.data[y * width + x] =
        (1 - dy) * ((1 - dx) * at(top, left) + dx * at(top, right)) + dy * ((1 - dx) * at(bottom, left) + dx * at(bottom, right));
    }
  }
  return out;
}

export function localBackground(grey, paperIsLight) {
  const sign = paperIsLight ? 1 : -1;
  const small = map(shrink(grey, S.BACKGROUND_SIDE), (value) => sign * value);
  const level = map(slide(small, S.BACKGROUND_WINDOW, largest), (value) => sign * value);
  return bilinear(slide(level, S.BACKGROUND_WINDOW, mean), grey.height, grey.width);
}

export function inkMaps(grey) {
  const paper = localBackground(grey, true);
  const board = localBackground(grey, false);
  const clamp = (value) => Math.min(Math.max(value, 0), 1);
  const dark = map(grey, (value, i) => clamp((paper.data[i] - value) / Math.max(paper.data[i], 0.05)));
  const light = map(grey, (value, i) => clamp((value - board.data[i]) / Math.max(1 - board.data[i], 0.05)));
  return [dark, light];
}

function centreWeight(height, width) {
  const out = image(height, width);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const inside = y >= height / 6 && y < (height * 5) / 6 && x >= width / 6 && x < (width * 5) / 6;
      out.data[y * width + x] = inside ? 1 : 0.25;
    }
  }
  return out;
}

// Otsu's method over 256 bins of [0, 1], at the levels i / 255 that mnist_cnn/digit_image.py uses.
export function otsuThreshold(picture) {
  const histogram = new Float64Array(256);
  for (const value of picture.data) histogram[Math.min(Math.floor(value * 256), 255)] += 1;
  const total = picture.data.length;
  let weight = 0;
  let meanSum = 0;
  const levels = Array.from({ length: 256 }, (_, i) => Math.fround(i / 255));
  const meanAll = histogram.reduce((acc, count, i) => acc + (count / total) * levels[i], 0);
  let best = -1;
  let bestLevel = 0;
  for (let i = 0; i < 256; i++) {
    weight += histogram[i] / total;
    meanSum += (histogram[i] / total) * levels[i];
    const between = (meanAll * weight - meanSum) ** 2 / Math.max(weight * (1 - weight), 1e-12);
    if (between > best) {
      best = between;
      bestLevel = levels[i];
    }
  }
  return bestLevel;
}

// 8-connected pieces of a 0/1 mask: a label per pixel (0 outside) and each label's pixel count.
function labelPieces(mask) {
  const labels = new Int32Array(mask.data.length);
  const mass = [0];
  for (let start = 0; start < labels.length; start++) {
    if (!mask.data[start] || labels[start]) continue;
    const label = mass.length;
    mass.push(0);
    const stack = [start];
    labels[start] = label;
    while (stack.length) {
      const here = stack.pop();
      mass[label] += 1;
      const y = Math.floor(here / mask.width);
      const x = here % mask.width;
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const row = y + dy;
          const column = x + dx;
          if (row < 0 || column < 0 || row >= mask.height || column >= mask.width) continue;
          const next = row * mask.width + column;
          if (mask.data[next] && !labels[next]) {
            labels[next] = label;
            stack.push(next);
          }
        }
      }
    }
  }
  return { labels, mass };
}

export function digitMask(ink) {
  const threshold = Math.max(otsuThreshold(ink), S.MIN_CONTRAST);
  const strong = map(ink, (value) => (value > threshold ? 1 : 0));
  const scale = S.COMPONENT_SIDE / Math.max(ink.height, ink.width);
  let small = strong;
  if (scale < 1) {
    const height = Math.max(1, roundHalfEven(ink.height * scale));
    const width = Math.max(1, roundHalfEven(ink.width * scale));
    small = adaptivePool(strong, height, width, largest);
  }
  const { labels, mass } = labelPieces(small);
  const touching = new Set();
  for (let y = 0; y < small.height; y++) {
    for (let x = 0; x < small.width; x++) {
      if (y === 0 || x === 0 || y === small.height - 1 || x === small.width - 1) touching.add(labels[y * small.width + x]);
    }
  }
  let pieces = mass.map((_, label) => label).filter((label) => label > 0);
  const heaviest = (chosen) => largest(chosen.map((label) => mass[label]));
  const inside = pieces.filter((label) => !touching.has(label));
  if (inside.length && heaviest(inside) >= Math.max(S.MIN_INSIDE_PIECE, S.MIN_INSIDE_SHARE * heaviest(pieces))) {
    pieces = inside;
  }
  const floor = S.MIN_PIECE_SHARE * heaviest(pieces);
  const kept = new Set(pieces.filter((label) => mass[label] >= floor));
  const keptMask = map(small, (_, i) => (kept.has(labels[i]) ? 1 : 0));
  const grown = morph(keptMask, 1, true);
  // torch's nearest-neighbour upscaling, which computes the source index in float32.
  const nearest = (i, inSize, outSize) => Math.min(Math.floor(Math.fround(i * Math.fround(inSize / outSize))), inSize - 1);
  return map(strong, (value, i) => {
    const row = nearest(Math.floor(i / ink.width), small.height, ink.height);
    const column = nearest(i % ink.width, small.width, ink.width);
    return value && grown.data[row * small.width + column] > 0 ? 1 : 0;
  });
}

export function strokeWidth(mask) {
  let edges = 0;
  const at = (y, x) => (y < 0 || x < 0 || y >= mask.height || x >= mask.width ? 0 : mask.data[y * mask.width + x]);
  for (let y = -1; y <= mask.height; y++) for (let x = -1; x < mask.width; x++) edges += at(y, x) !== at(y, x + 1);
  for (let y = -1; y < mask.height; y++) for (let x = -1; x <= mask.width; x++) edges += at(y, x) !== at(y + 1, x);
  return (2 * sum(mask)) / Math.max(1, edges);
}

// Grow (dilate) or thin (erode) by a square of the given radius; pixels outside the image take no part.
export function morph(picture, radius, grow) {
  const pick = grow ? Math.max : Math.min;
  const pass = (source, vertical) => {
    const out = image(source.height, source.width);
    for (let y = 0; y < source.height; y++) {
      for (let x = 0; x < source.width; x++) {
        let value = grow ? -Infinity : Infinity;
        for (let d = -radius; d <= radius; d++) {
          const row = vertical ? y + d : y;
          const column = vertical ? x : x + d;
          if (row >= 0 && column >= 0 && row < source.height && column < source.width) {
            value = pick(value, source.data[row * source.width + column]);
          }
        }
        out.data[y * source.width + x] = value;
      }
    }
    return out;
  };
  return pass(pass(picture, false), true);
}

function crop(picture, top, bottom, left, right) {
  const out = image(bottom - top, right - left);
  for (let y = top; y < bottom; y++) for (let x = left; x < right; x++) out.data[(y - top) * out.width + x - left] = picture.data[y * picture.width + x];
  return out;
}

function quantile(values, q) {
  const sorted = Float64Array.from(values).sort();
  const position = q * (sorted.length - 1);
  const low = Math.floor(position);
  const high = Math.min(low + 1, sorted.length - 1);
  return sorted[low] + (sorted[high] - sorted[low]) * (position - low);
}

// torch's bilinear interpolation with antialias=True (a triangle filter as wide as the scale when shrinking).
function resizeAxis(picture, outSize, vertical) {
  const inSize = vertical ? picture.height : picture.width;
  const scale = inSize / outSize;
  const support = scale >= 1 ? scale : 1;
  const invscale = scale >= 1 ? 1 / scale : 1;
  const out = vertical ? image(outSize, picture.width) : image(picture.height, outSize);
  for (let i = 0; i < outSize; i++) {
    const centre = scale * (i + 0.5);
    const first = Math.max(Math.trunc(centre - support + 0.5), 0);
    const count = Math.min(Math.trunc(centre + support + 0.5), inSize) - first;
    const weights = Array.from({ length: count }, (_, j) => Math.max(0, 1 - Math.abs((j + first - centre + 0.5) * invscale)));
    const total = weights.reduce((a, b) => a + b, 0);
    const normalised = weights.map((weight) => (total === 0 ? weight : weight / total));
    const across = vertical ? picture.width : picture.height;
    for (let k = 0; k < across; k++) {
      let value = 0;
      normalised.forEach((weight, j) => {
        const source = vertical ? (first + j) * picture.width + k : k * picture.width + first + j;
        value += weight * picture.data[source];
      });
      out.data[vertical ? i * picture.width + k : k * outSize + i] = value;
    }
  }
  return out;
}

function centreInField(digit) {
  const mass = Math.max(sum(digit), 1e-6);
  let rowMoment = 0;
  let columnMoment = 0;
  for (let y = 0; y < digit.height; y++) {
    for (let x = 0; x < digit.width; x++) {
      rowMoment += y * digit.data[y * digit.width + x];
      columnMoment += x * digit.data[y * digit.width + x];
    }
  }
  const place = (centre, size) => Math.min(Math.max(roundHalfEven(S.FIELD / 2 - 0.5 - centre), 0), S.FIELD - size);
  const top = place(rowMoment / mass, digit.height);
  const left = place(columnMoment / mass, digit.width);
  const field = image(S.FIELD, S.FIELD);
  for (let y = 0; y < digit.height; y++) for (let x = 0; x < digit.width; x++) field.data[(top + y) * S.FIELD + left + x] = digit.data[y * digit.width + x];
  return field;
}

// A (H, W) grey image in [0, 1] prepared like MNIST: the 28x28 field of ink levels in [0, 1], before normalising.
export function preparePixels(grey) {
  grey = shrink(grey, S.WORKING_SIDE);
  const [dark, light] = inkMaps(grey);
  const weight = centreWeight(grey.height, grey.width);
  const weighted = (ink) => ink.data.reduce((total, value, i) => total + value * weight.data[i], 0);
  let ink = weighted(dark) <= weighted(light) ? dark : light;
  if (largest(Array.from(ink.data)) < S.MIN_CONTRAST) throw new NoDigit("no digit found (the image has no contrast)");
  let mask = digitMask(ink);
  let top = Infinity;
  let bottom = -1;
  let left = Infinity;
  let right = -1;
  mask.data.forEach((value, i) => {
    if (!value) return;
    const y = Math.floor(i / mask.width);
    const x = i % mask.width;
    top = Math.min(top, y);
    bottom = Math.max(bottom, y + 1);
    left = Math.min(left, x);
    right = Math.max(right, x + 1);
  });
  mask = crop(mask, top, bottom, left, right);
  const grownMask = morph(mask, 1, true);
  ink = map(crop(ink, top, bottom, left, right), (value, i) => value * grownMask.data[i]);
  const level = Math.max(quantile(ink.data.filter((_, i) => mask.data[i] > 0), 0.9), 1e-6);
  ink = map(ink, (value) => Math.min(Math.max(value / level, 0), 1));
  const scale = S.BOX / Math.max(ink.height, ink.width);
  const width = strokeWidth(mask);
  const change = roundHalfEven((S.MNIST_STROKE_WIDTH / scale - width) / 2);
  if (change > 0) ink = morph(ink, change, true);
  else if (change < 0) ink = morph(ink, Math.min(-change, roundHalfEven(width / 4)), false);
  const height = Math.max(1, roundHalfEven(ink.height * scale));
  const across = Math.max(1, roundHalfEven(ink.width * scale));
  const digit = resizeAxis(resizeAxis(ink, across, false), height, true);
  return centreInField(map(digit, (value) => Math.min(Math.max(value, 0), 1)));
}

// The pixels of a canvas's ImageData as grey levels (its red channel: the pad draws in greys).
export function greyOf(imageData) {
  const out = image(imageData.height, imageData.width);
  for (let i = 0; i < out.data.length; i++) out.data[i] = Math.fround(imageData.data[4 * i] / 255);
  return out;
}
