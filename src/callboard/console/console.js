// Callboard console: a browser leg in a room, the room's participants live, and the room's
// controls. Plain script, no build step; it talks only to the public API (REST + /v1/vsi).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { pc: null, legId: null, roomId: null, muted: false, deaf: false,
                recording: false, vsi: null, analyser: null, audioContext: null };

// A server started with API_KEYS answers 401 without a key: the page then shows the key field
// and sends the key as a bearer token (and as `token` on its WebSocket, which has no headers).
function apiKey() { return $("api-key").value.trim(); }

function askForKey() {
  $("key-row").hidden = false;
  setStatus("this server needs an API key");
  $("api-key").focus();
}

async function api(method, path, body) {
  const headers = body === undefined ? {} : { "Content-Type": "application/json" };
  if (apiKey()) headers.Authorization = `Bearer ${apiKey()}`;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const data = text ? JSON.parse(text) : {};
  if (response.status === 401) askForKey();
  if (!response.ok) {
    const message = `${method} ${path}: ${response.status} ${data.error || text}`;
    logLine(message);
    throw new Error(message);
  }
  return data;
}

function logLine(text) {
  const item = document.createElement("li");
  item.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  $("events").prepend(item);
  while ($("events").children.length > 200) $("events").lastChild.remove();
}

function setStatus(text) { $("status").textContent = text; }

// ---- joining: offer, answer, candidates both ways ----

async function join() {
  const roomId = $("room").value.trim();
  if (!roomId) return;
  $("join").disabled = true;
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const pc = new RTCPeerConnection();
    state.pc = pc;
    stream.getTracks().forEach((track) => pc.addTrack(track, stream));
    const early = [];
    pc.onicecandidate = (event) => {
      const init = event.candidate ? event.candidate.toJSON() : { candidate: "" };
      if (state.legId) sendCandidate(init); else early.push(init);
    };
    pc.ontrack = (event) => hear(event.streams[0] || new MediaStream([event.track]));
    pc.onconnectionstatechange = () => {
      setStatus(`connection ${pc.connectionState}`);
      if (["failed", "closed"].includes(pc.connectionState)) leftCall();
    };
    await pc.setLocalDescription(await pc.createOffer());
    const answer = await api("POST", "/v1/webrtc/offer",
      { sdp: pc.localDescription.sdp, room_id: roomId, app_id: "console" });
    state.legId = answer.leg_id;
    state.roomId = roomId;
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    early.splice(0).forEach(sendCandidate);
    pollCandidates(answer.leg_id);
    watchRoom(roomId);
    $("hangup").disabled = $("mute").disabled = $("deaf").disabled = false;
    buildKeypad(pc);
    logLine(`joined ${roomId} as leg ${answer.leg_id}`);
  } catch (error) {
    logLine(`join failed: ${error.message || error}`);
    leftCall();
  }
}

function sendCandidate(init) {
  api("POST", `/v1/legs/${state.legId}/ice-candidates`, init).catch(() => {});
}

async function pollCandidates(legId) {
  while (state.legId === legId && state.pc) {
    const polled = await api("GET", `/v1/legs/${legId}/ice-candidates`);
    for (const candidate of polled.candidates) await state.pc.addIceCandidate(candidate);
    if (polled.done) { await state.pc.addIceCandidate(null).catch(() => {}); return; }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

// What the browser hears plays in the page and feeds an analyser (levels per frequency).
function hear(stream) {
  $("remote").srcObject = stream;
  const context = new AudioContext();
  const source = context.createMediaStreamSource(stream);
  const analyser = context.createAnalyser();
  analyser.fftSize = 8192;
  source.connect(analyser);
  state.audioContext = context;
  state.analyser = analyser;
}

function levels(frequencies) {
  const analyser = state.analyser;
  if (!analyser) return null;
  const bins = new Float32Array(analyser.frequencyBinCount);
  analyser.getFloatFrequencyData(bins);
  const hzPerBin = analyser.context.sampleRate / analyser.fftSize;
  return frequencies.map((f) => {
    const center = Math.round(f / hzPerBin);
    let best = -Infinity;
    for (let i = center - 3; i <= center + 3; i++) best = Math.max(best, bins[i]);
    return best;
  });
}

async function hangup() {
  const legId = state.legId;
  if (legId) await api("DELETE", `/v1/legs/${legId}`).catch(() => {});
  leftCall();
}

function leftCall() {
  if (state.pc) state.pc.close();
  if (state.audioContext) state.audioContext.close();
  Object.assign(state, { pc: null, legId: null, analyser: null, audioContext: null,
                         muted: false, deaf: false });
  $("join").disabled = false;
  $("hangup").disabled = $("mute").disabled = $("deaf").disabled = true;
  $("keypad").replaceChildren();
  setStatus("not connected");
}

// ---- the leg's own controls ----

async function toggle(flag) {
  if (!state.legId) return;
  const on = !state[flag];
  await api(on ? "POST" : "DELETE", `/v1/legs/${state.legId}/${flag === "muted" ? "mute" : "deaf"}`);
  state[flag] = on;
  const button = flag === "muted" ? $("mute") : $("deaf");
  button.classList.toggle("on", on);
  button.textContent = flag === "muted" ? (on ? "Unmute" : "Mute") : (on ? "Undeafen" : "Deafen");
}

function buildKeypad(pc) {
  const sender = pc.getSenders().find((s) => s.track && s.track.kind === "audio");
  const keys = "123456789*0#";
  $("keypad").replaceChildren(...[...keys].map((digit) => {
    const button = document.createElement("button");
    button.textContent = digit;
    button.onclick = () => {
      if (sender && sender.dtmf && sender.dtmf.canInsertDTMF) sender.dtmf.insertDTMF(digit, 120);
      else logLine("DTMF is not available on this connection");
    };
    return button;
  }));
}

// ---- the room: participants live over VSI, and its controls ----

function watchRoom(roomId) {
  $("room-label").textContent = roomId;
  if (state.vsi) state.vsi.close();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const token = apiKey() ? `?token=${encodeURIComponent(apiKey())}` : "";
  const socket = new WebSocket(`${scheme}://${location.host}/v1/vsi${token}`);
  state.vsi = socket;
  socket.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.type === "ping") { socket.send(JSON.stringify({ type: "pong" })); return; }
    if (!event.type || event.type === "connected") return;
    if (event.room_id === roomId || (event.leg_id && event.type.startsWith("leg."))) {
      logLine(`${event.type} ${event.leg_id || event.room_id || ""}`);
      refreshParticipants(roomId);
    }
    if (event.type === "leg.disconnected" && event.leg_id === state.legId) leftCall();
  };
  refreshParticipants(roomId);
}

async function refreshParticipants(roomId) {
  let room;
  try {
    room = await api("GET", `/v1/rooms/${encodeURIComponent(roomId)}`);
  } catch (error) {
    $("participants").innerHTML = '<li class="empty">The room is empty.</li>';
    return;
  }
  const items = room.participants.map((leg) => {
    const item = document.createElement("li");
    item.dataset.legId = leg.id;
    const name = document.createElement("span");
    name.textContent = `${leg.type} ${leg.id.slice(0, 8)}`;
    if (leg.id === state.legId) { name.classList.add("you"); name.textContent += " (you)"; }
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = [leg.state, leg.muted ? "muted" : "", leg.deaf ? "deaf" : ""]
      .filter(Boolean).join(" · ");
    item.append(name, meta);
    return item;
  });
  if (!items.length) items.push(Object.assign(document.createElement("li"),
    { className: "empty", textContent: "The room is empty." }));
  $("participants").replaceChildren(...items);
}

function roomPath(suffix) {
  const roomId = state.roomId || $("room").value.trim();
  return `/v1/rooms/${encodeURIComponent(roomId)}${suffix}`;
}

async function toggleRecording() {
  if (state.recording) {
    const done = await api("DELETE", roomPath("/record"));
    logLine(`recording stopped: ${done.file || done.status}`);
  } else {
    await api("POST", roomPath("/record"), {});
  }
  state.recording = !state.recording;
  $("record").textContent = state.recording ? "Stop recording" : "Start recording";
  $("record").classList.toggle("on", state.recording);
}

function bind(id, handler) {
  $(id).onclick = () => handler().catch((error) => logLine(error.message || String(error)));
}

bind("join", join);
bind("hangup", hangup);
bind("mute", () => toggle("muted"));
bind("deaf", () => toggle("deaf"));
bind("record", toggleRecording);
bind("play-tone", () => api("POST", roomPath("/play"), { tone: $("tone").value }));
bind("speak", () => api("POST", roomPath("/tts"), { text: $("tts-text").value }));
bind("dial", () => api("POST", "/v1/legs",
  { type: "sip", uri: $("dial-uri").value.trim(), room_id: state.roomId || $("room").value.trim() }));

const params = new URLSearchParams(location.search);
if (params.get("room")) $("room").value = params.get("room");
$("api-key").value = sessionStorage.getItem("callboard-key") || "";
$("api-key").onchange = () => sessionStorage.setItem("callboard-key", apiKey());
// Ask at once when the server wants a key (the probe itself needs none to be refused).
fetch("/v1/rooms", { headers: apiKey() ? { Authorization: `Bearer ${apiKey()}` } : {} })
  .then((response) => { if (response.status === 401) askForKey(); })
  .catch(() => setStatus("server unreachable"));
window.callboardConsole = { state, levels, join, hangup, api };
