// Passkeys: register one (an enrolment page), sign in with one, and sign changes with it (forms marked
// data-passkey: the form's fields go to its data-challenge URL, the authenticator signs each challenge,
// and the signed parts go to its data-act URL).
// Served from the view itself: the Content-Security-Policy allows no inline or external script.
(function () {
  "use strict";
  function toBytes(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) { b64 += "="; }
    var raw = atob(b64), out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { out[i] = raw.charCodeAt(i); }
    return out.buffer;
  }
  function toText(buffer) {
    var bytes = new Uint8Array(buffer), raw = "";
    for (var i = 0; i < bytes.length; i++) { raw += String.fromCharCode(bytes[i]); }
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function post(url, fields) {
    return fetch(url, {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/x-www-form-urlencoded"},
      body: new URLSearchParams(fields).toString()}).then(function (r) { return r.json(); });
  }
  function say(form, text) {
    var out = form.querySelector(".passkey-out");
    if (out) { out.textContent = text; }
  }
  function finish(form, answer) {
    if (answer.error) { say(form, answer.error); return; }
    say(form, answer.message || "");
    window.location.assign(answer.redirect || window.location.pathname);
  }
  async function sign(form) {
    var fields = Object.fromEntries(new FormData(form).entries());
    var ready = await post(form.dataset.challenge || "/passkey/challenge", fields);
    if (ready.error) { say(form, ready.error); return; }
    var signed = [];
    for (var part of ready.parts) {
      var got = await navigator.credentials.get({publicKey: {
        challenge: toBytes(part.challenge), rpId: ready.rp_id, userVerification: "required", timeout: 60000,
        allowCredentials: ready.allow.map(function (id) { return {type: "public-key", id: toBytes(id)}; })}});
      signed.push({body: part.body, mac: part.mac, extra: part.extra, credential: {id: got.id, type: got.type, response: {
        authenticatorData: toText(got.response.authenticatorData),
        clientDataJSON: toText(got.response.clientDataJSON), signature: toText(got.response.signature)}}});
    }
    finish(form, await post(form.dataset.act || "/passkey/act",
                            {csrf: fields.csrf, back: fields.back || "", parts: JSON.stringify(signed)}));
  }
  async function enrol(form) {
    var o = JSON.parse(form.dataset.options);
    var made = await navigator.credentials.create({publicKey: {
      rp: o.rp, user: {id: toBytes(o.user.id), name: o.user.name, displayName: o.user.displayName},
      challenge: toBytes(o.challenge), pubKeyCredParams: [{type: "public-key", alg: -7}, {type: "public-key", alg: -8}],
      authenticatorSelection: {residentKey: "preferred", userVerification: "required"}, attestation: "none",
      timeout: 60000}});
    var credential = {id: made.id, rawId: toText(made.rawId), type: made.type, response: {
      clientDataJSON: toText(made.response.clientDataJSON),
      attestationObject: toText(made.response.attestationObject)}};
    var fields = Object.fromEntries(new FormData(form).entries());
    fields.credential = JSON.stringify(credential);
    finish(form, await post("/passkey/enroll", fields));
  }
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var job = form.hasAttribute("data-passkey") ? sign : form.hasAttribute("data-passkey-enrol") ? enrol : null;
    if (!job) { return; }
    event.preventDefault();
    say(form, "Waiting for your passkey…");
    job(form).catch(function (err) { say(form, "No passkey signature: " + err.message); });
  });
})();
