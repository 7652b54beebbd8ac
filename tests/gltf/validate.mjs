// Prints the Khronos glTF-Validator report of one .glb/.gltf file as JSON: node validate.mjs FILE
import { readFile } from "node:fs/promises";
import validator from "gltf-validator";

const path = process.argv[2];
const report = await validator.validateBytes(new Uint8Array(await readFile(path)), { uri: path });
console.log(JSON.stringify(report, null, 2));
