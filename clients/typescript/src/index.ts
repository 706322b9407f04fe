export * from "./protocol.js";
export * from "./errors.js";
export * from "./client.js";
export * from "./rest.js";
