// Every test file awaits this once: device + shader validation.
import { initGpu } from "../src/gpu/mod.ts";
await initGpu();
