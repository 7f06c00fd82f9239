// Entry of the single-executable service:
//
//   bun build --compile examples/service-executable.ts node_modules/lanes/src/serve/engine-worker.ts \
//     --outfile lanes-service
//
// The engine Worker's module is the second entry point so the executable carries it too.
import "./embed-library.ts";
import "./service.ts";
