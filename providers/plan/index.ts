export * from "./defaults";
export * from "./steps";
export * from "./rehearsal";
export * from "./promotion";
