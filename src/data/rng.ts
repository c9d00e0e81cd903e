// The seeded RNG lives in src/util so that models (which never import src/data) can use it too.
export { Rng } from "../util/rng.ts";
