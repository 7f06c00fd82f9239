// Bun's `with { type: "file" }` import of a prebuilt library yields its path.
declare module "@lanes/linux-x64-gnu/lib/liblanes.so" {
  const path: string;
  export default path;
}
