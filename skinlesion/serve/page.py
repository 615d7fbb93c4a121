"""The page at `/`: drop an image (with age, sex and site for a model that takes them), see the
top classes with their probabilities, the unknown flag and, for a model file, the Grad-CAM
overlay. One self-contained HTML file: its style and script are inline (the script allowed
by its hash in the Content-Security-Policy), it fetches nothing but POST /predict, and it
writes the answer with textContent, never as HTML."""

from __future__ import annotations

import base64
import hashlib
import html

from skinlesion.data.metadata import SEXES, SITES
from skinlesion.serve.model import ServedModel

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.35rem; margin-bottom: .2rem; } .muted { color: #666; font-size: .9rem; }
#drop { border: 2px dashed #889; border-radius: 8px; padding: 1.6rem; text-align: center; margin: 1rem 0; }
#drop.over { background: #eef; } fieldset { border: 1px solid #ccd; border-radius: 6px; margin: .8rem 0; }
label { margin-right: 1rem; } table { border-collapse: collapse; margin: .6rem 0; }
td { padding: .2rem .6rem .2rem 0; } .bar { background: #4a6fd1; height: .8rem; border-radius: 3px; }
#preview, #cam { max-width: 100%; margin-top: .6rem; } .unknown { color: #a00; font-weight: 600; }
.error { color: #a00; }
"""

SCRIPT = """
const form = document.getElementById('form'), input = document.getElementById('image');
const drop = document.getElementById('drop'), result = document.getElementById('result');
const status = document.getElementById('status'), preview = document.getElementById('preview');
let chosen = null;
function cell(row, text) {
  const td = document.createElement('td'); td.textContent = text; row.appendChild(td); return td;
}
function show(answer) {
  const rows = document.getElementById('classes'); rows.replaceChildren();
  for (const entry of answer.top) {
    const row = document.createElement('tr');
    cell(row, entry['class']); cell(row, entry.probability.toFixed(3));
    const bar = document.createElement('div'); bar.className = 'bar';
    bar.style.width = Math.max(1, Math.round(160 * entry.probability)) + 'px';
    cell(row, '').appendChild(bar); rows.appendChild(row);
  }
  const unknown = document.getElementById('unknown');
  const score = 'unknown score ' + answer.unknown_score.toFixed(3);
  unknown.className = answer.unknown ? 'unknown' : '';
  unknown.textContent = answer.unknown === null ? score + ' (the model has no unknown threshold)'
    : answer.unknown ? 'Unknown: the model is unsure of this image (' + score + ')' : 'Known class (' + score + ')';
  const cam = document.getElementById('cam');
  if (answer.cam) { cam.src = answer.cam; cam.hidden = false; } else { cam.hidden = true; }
  document.getElementById('warnings').textContent = (answer.warnings || []).join('; ');
  status.textContent = 'Predicted ' + answer.predicted + ' (model ' + answer.model + ', version '
    + answer.version + ')';
  status.className = ''; result.dataset.predicted = answer.predicted; result.dataset.state = 'done';
}
function fail(message) {
  status.textContent = 'Error: ' + message; status.className = 'error'; result.dataset.state = 'error';
}
async function classify() {
  if (!chosen) { return; }
  const data = new FormData(form); data.delete('image'); data.append('image', chosen, chosen.name);
  for (const [key, value] of [...data.entries()]) { if (value === '') { data.delete(key); } }
  result.dataset.state = 'busy'; status.textContent = 'Classifying ' + chosen.name + '...'; status.className = '';
  try {
    const response = await fetch('predict', { method: 'POST', body: data });
    const answer = await response.json().catch(() => ({ error: response.status + ' ' + response.statusText }));
    if (response.ok) { show(answer); } else { fail(answer.error); }
  } catch (error) { fail(error.message); }
}
function choose(file) {
  if (!file) { return; }
  chosen = file; preview.src = URL.createObjectURL(file); preview.hidden = false; classify();
}
input.addEventListener('change', () => choose(input.files[0]));
drop.addEventListener('dragover', (event) => { event.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (event) => { event.preventDefault(); drop.classList.remove('over');
  choose(event.dataTransfer.files[0]); });
form.addEventListener('submit', (event) => { event.preventDefault(); classify(); });
"""


def _options(name: str, label: str, choices: tuple[str, ...]) -> str:
    items = "".join(f'<option value="{html.escape(c)}">{html.escape(c)}</option>' for c in choices)
    return f'<label>{label} <select name="{name}"><option value="">not given</option>{items}</select></label>'


def _metadata_fields(served: ServedModel) -> str:
    if not served.info.uses_metadata:
        return '<p class="muted">This model takes no age, sex or site.</p>'
    age = '<label>Age <input name="age" type="number" min="0" max="120" step="5" style="width:5em"></label>'
    fields = age + _options("sex", "Sex", SEXES) + _options("site", "Site", SITES)
    return f"<fieldset><legend>Patient (optional)</legend>{fields}</fieldset>"


def page_html(served: ServedModel) -> tuple[str, str]:
    """The page for `served`, and the Content-Security-Policy that lets it run its own script only."""
    name, info = html.escape(served.name), served.info
    card = ' &middot; <a href="model-card">model card</a>' if served.model_card else ""
    cam = (
        '<label><input type="checkbox" name="cam" value="1" checked> Grad-CAM overlay</label>'
        if served.explains
        else '<span class="muted">Grad-CAM needs the model file (.pt), not its export.</span>'
    )
    body = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>skinlesion: {name}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>
<body><h1>Skin lesion classifier</h1>
<p class="muted">Model {name}, version {served.version}: {len(info.classes)} classes
({html.escape(", ".join(info.classes))}), {info.image_size} px{card}. Not a medical device.</p>
<form id="form"><div id="drop"><p>Drop a dermoscopy image here, or</p>
<input type="file" id="image" name="image" accept="image/*"></div>
{_metadata_fields(served)}<p>{cam} <button type="submit">Classify again</button></p></form>
<div id="result" data-state="idle"><p id="status"></p><table><tbody id="classes"></tbody></table>
<p id="unknown"></p><p id="warnings" class="muted"></p>
<img id="cam" alt="Grad-CAM overlay" hidden><img id="preview" alt="the uploaded image" hidden></div>
<script>{SCRIPT}</script></body></html>
"""
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    policy = (
        f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; "
        "img-src data: blob:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
    return body, policy
