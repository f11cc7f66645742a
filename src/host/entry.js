// The Worker's entry module: hands each event to the wasm (`./index.js` is the wasm-bindgen glue
// of the tollgate crate, placed beside this file by scripts/build-worker).
//
// A trap in the wasm (a panic: the code is written never to panic on anything a request, a
// configuration or a server reply can influence) leaves the instance unusable; the next event
// then starts a fresh instance instead of failing every request of the isolate.
import * as tollgate from "./index.js";

let broken = false;

function noteTrap(error) {
  if (error instanceof WebAssembly.RuntimeError) {
    console.error("tollgate: the wasm instance trapped; it restarts on the next event", error);
    broken = true;
  }
}

function ready() {
  if (broken) {
    broken = false;
    tollgate.__wbg_reset_state();
  }
}

addEventListener("error", (event) => noteTrap(event.error));
addEventListener("unhandledrejection", (event) => noteTrap(event.reason));

export default {
  fetch(request, env, ctx) {
    ready();
    return new Promise((resolve, reject) => {
      try {
        tollgate.fetch(request, env, ctx, resolve, reject);
      } catch (error) {
        noteTrap(error);
        reject(error);
      }
    });
  },

  scheduled(controller, env, ctx) {
    ready();
    try {
      tollgate.scheduled(controller, env, ctx);
    } catch (error) {
      noteTrap(error);
      throw error;
    }
  },
};
