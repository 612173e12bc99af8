export * from "./errors";
export * from "./validate";
export * from "./parse";
export * from "./sql";
export * from "./driver";
