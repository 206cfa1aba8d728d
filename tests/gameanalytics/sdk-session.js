// The official GameAnalytics JavaScript SDK (npm `gameanalytics`, the build for Node), run
// unchanged against a GameMetrics gateway: init, one session with business, progression,
// resource, design and error events, then the session's end. Driven by tests/gameanalytics.rs,
// which compares every read model with what this script reports the SDK sent.
//
// Environment: GA_URL (the gateway, http://127.0.0.1:PORT), GA_GAME_KEY, GA_SECRET_KEY,
// GA_OUT (where to write the report), GA_STORE (a fresh directory for the SDK's localStorage).
//
// What the SDK expects from a browser is given by small packages: XMLHttpRequest
// (`xmlhttprequest`), localStorage (`node-localstorage`), and a minimal `navigator` and
// `window`. The SDK has no setting for the collector's host (https://api.gameanalytics.com is
// hard-coded in GAHTTPApi's constructor): this script points the one GAHTTPApi instance at
// GA_URL after loading the SDK — the only change to it. Every request is recorded as sent and
// as answered (the report lists them), so the test can tell what the SDK really sent.

"use strict";

const fs = require("fs");

const { GA_URL, GA_GAME_KEY, GA_SECRET_KEY, GA_OUT, GA_STORE } = process.env;
for (const [name, value] of Object.entries({ GA_URL, GA_GAME_KEY, GA_SECRET_KEY, GA_OUT, GA_STORE })) {
  if (!value) {
    console.error(`sdk-session.js: ${name} is not set`);
    process.exit(2);
  }
}

// --- what the SDK needs from a browser ---------------------------------------------------
const { LocalStorage } = require("node-localstorage");
global.localStorage = new LocalStorage(GA_STORE);
global.navigator = {
  userAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
  appName: "Netscape",
  appVersion: "5.0 (X11; Linux x86_64)",
  platform: "Linux x86_64",
  vendor: "Google Inc.",
  onLine: true,
  language: "en-US",
};
global.window = global;
global.window.addEventListener = () => {};

// Records every request the SDK makes and the answer it got.
const requests = [];
const BaseXHR = require("xmlhttprequest").XMLHttpRequest;
global.XMLHttpRequest = function RecordingXHR() {
  const xhr = new BaseXHR();
  const record = { headers: {} };
  const open = xhr.open.bind(xhr);
  xhr.open = (method, url, ...rest) => {
    record.method = method;
    record.url = url;
    return open(method, url, ...rest);
  };
  const setRequestHeader = xhr.setRequestHeader.bind(xhr);
  xhr.setRequestHeader = (name, value) => {
    record.headers[name.toLowerCase()] = value;
    return setRequestHeader(name, value);
  };
  const send = xhr.send.bind(xhr);
  xhr.send = (body) => {
    record.body = body;
    requests.push(record);
    return send(body);
  };
  const previous = Object.getOwnPropertyDescriptor(xhr, "onreadystatechange");
  let handler = null;
  Object.defineProperty(xhr, "onreadystatechange", {
    get: () => handler,
    set: (fn) => {
      handler = function () {
        if (xhr.readyState === 4) {
          record.status = xhr.status;
          record.response = xhr.responseText;
        }
        return fn && fn.apply(this, arguments);
      };
      if (previous && previous.set) previous.set.call(xhr, handler);
    },
    configurable: true,
  });
  return xhr;
};

// --- the SDK ------------------------------------------------------------------------------
const ga = require("gameanalytics");
const GameAnalytics = ga.GameAnalytics;
const api = ga.http.GAHTTPApi.instance;
api.baseUrl = `${GA_URL}/${api.version}`;
api.remoteConfigsBaseUrl = `${GA_URL}/remote_configs/${api.remoteConfigsVersion}`;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(what, check, seconds = 30) {
  const deadline = Date.now() + seconds * 1000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

const pendingEvents = () => {
  const store = ga.store.GAStore;
  const rows = store.select(ga.store.EGAStore.Events, []);
  return rows ? rows.length : 0;
};

async function main() {
  GameAnalytics.setEnabledInfoLog(true);
  GameAnalytics.configureBuild("1.4.0");
  GameAnalytics.configureAvailableResourceCurrencies(["Gems", "Gold"]);
  GameAnalytics.configureAvailableResourceItemTypes(["GemPacks", "Weapons", "Rewards"]);
  GameAnalytics.setEventProcessInterval(1);
  GameAnalytics.initialize(GA_GAME_KEY, GA_SECRET_KEY);
  await until("the session to start", () => ga.state.GAState.sessionIsStarted() && ga.state.GAState.isEnabled());

  const { EGAProgressionStatus, EGAResourceFlowType, EGAErrorSeverity } = ga;
  GameAnalytics.addBusinessEvent("USD", 499, "GemPacks", "Gems500", "Shop");
  GameAnalytics.addBusinessEvent("EUR", 199, "GemPacks", "Gems100", "EndOfLevel");
  GameAnalytics.addResourceEvent(EGAResourceFlowType.Source, "Gems", 500, "GemPacks", "Gems500");
  GameAnalytics.addResourceEvent(EGAResourceFlowType.Sink, "Gems", 120, "Weapons", "Sword");
  GameAnalytics.addProgressionEvent(EGAProgressionStatus.Start, "World1", "Level1");
  GameAnalytics.addProgressionEvent(EGAProgressionStatus.Complete, "World1", "Level1", undefined, 1200);
  GameAnalytics.addProgressionEvent(EGAProgressionStatus.Start, "World1", "Level2");
  GameAnalytics.addProgressionEvent(EGAProgressionStatus.Fail, "World1", "Level2", undefined, 300);
  GameAnalytics.addDesignEvent("Boss:Forest:Defeated", 42.5);
  GameAnalytics.addDesignEvent("Tutorial:Skipped");
  GameAnalytics.addErrorEvent(EGAErrorSeverity.Warning, "texture missing: hero.png");
  await until("every event to be delivered", () => pendingEvents() === 0);

  GameAnalytics.endSession();
  await until("the session end to be delivered", () =>
    requests.some((r) => r.status === 200 && (r.body || "").includes('"session_end"'))
  );
  await until("every event to be delivered", () => pendingEvents() === 0);

  const report = { user_id: ga.state.GAState.getIdentifier(), requests };
  fs.writeFileSync(GA_OUT, JSON.stringify(report, null, 2));
  process.exit(0);
}

main().catch((e) => {
  console.error(`sdk-session.js: ${e.stack || e}`);
  try {
    fs.writeFileSync(GA_OUT, JSON.stringify({ error: String(e), requests }, null, 2));
  } catch (_) {}
  process.exit(1);
});
