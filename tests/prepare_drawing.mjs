// Prepare drawings with the page's web/digit_image.js, for tests/test_web.py: reads a JSON list of
// {height, width, pixels} on stdin, writes the list of 28x28 fields (or the error of each) on stdout.
import { readFileSync } from "node:fs";
import { preparePixels } from "../web/digit_image.js";

const drawings = JSON.parse(readFileSync(0, "utf8"));
const fields = drawings.map(({ height, width, pixels }) => {
  try {
    return Array.from(preparePixels({ height, width, data: Float64Array.from(pixels) }).data);
  } catch (error) {
    return String(error.message);
  }
});
process.stdout.write(JSON.stringify(fields));
