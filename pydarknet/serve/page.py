"""The page `pydarknet serve` answers GET / with: choose (or drop) an image, see its detections drawn.

The page sends the file's bytes to POST /detect and draws the answer's `pixel_box`es and names on the image;
`/?sample` does the same with the shipped data/dog.jpg (GET /sample.jpg) as soon as the page loads.
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>pydarknet serve</title>
<style>
  body { font-family: sans-serif; margin: 1em; }
  #drop { border: 2px dashed #888; padding: 1em; margin-bottom: 1em; }
  canvas { max-width: 100%; display: block; }
  #status { margin: .5em 0; color: #444; }
  pre { margin: .5em 0; }
</style>
</head>
<body>
<h1>pydarknet serve</h1>
<div id="drop">
  <input type="file" id="file" accept="image/*">
  or drop an image here, or <a href="/?sample">try the sample image</a>.
  Programs: <code>curl --data-binary @image.jpg http://HOST:PORT/detect</code>
</div>
<div id="status">No image yet.</div>
<canvas id="canvas" width="0" height="0"></canvas>
<pre id="lines"></pre>
<script>
"use strict";
const statusLine = document.getElementById("status");
const canvas = document.getElementById("canvas");

function classColour(classId) {
  return "hsl(" + ((classId * 67) % 360) + ", 90%, 50%)";
}

function drawDetections(bitmap, answer) {
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0);
  const line = Math.max(2, Math.round(bitmap.height * 0.006));
  const fontSize = Math.max(12, Math.round(bitmap.height * 0.03));
  context.font = fontSize + "px sans-serif";
  context.textBaseline = "bottom";
  for (const object of answer.objects) {
    const box = object.pixel_box;
    context.strokeStyle = context.fillStyle = classColour(object.class_id);
    context.lineWidth = line;
    context.strokeRect(box.left, box.top, box.right - box.left, box.bottom - box.top);
    const label = object.name + " " + Math.round(object.confidence * 100) + "%";
    const labelTop = Math.max(0, box.top - fontSize - 4);
    context.fillRect(box.left, labelTop, context.measureText(label).width + 6, fontSize + 4);
    context.fillStyle = "black";
    context.fillText(label, box.left + 3, labelTop + fontSize + 2);
  }
}

async function detect(blob, name) {
  statusLine.textContent = "Detecting in " + name + "...";
  const response = await fetch("/detect", { method: "POST", body: blob });
  const answer = await response.json();
  if (!response.ok) {
    statusLine.textContent = name + ": " + response.status + " " + answer.error;
    return;
  }
  drawDetections(await createImageBitmap(blob), answer);
  statusLine.textContent = name + ": " + answer.objects.length + " detection(s), "
    + answer.width + "x" + answer.height;
  document.getElementById("lines").textContent = answer.objects.map(o => o.line).join("\\n");
  document.body.dataset.detections = String(answer.objects.length);
}

function detectFile(file) {
  if (file) detect(file, file.name).catch(error => { statusLine.textContent = String(error); });
}

document.getElementById("file").addEventListener("change", event => detectFile(event.target.files[0]));
const drop = document.getElementById("drop");
drop.addEventListener("dragover", event => event.preventDefault());
drop.addEventListener("drop", event => { event.preventDefault(); detectFile(event.dataTransfer.files[0]); });
if (new URLSearchParams(location.search).has("sample")) {
  fetch("/sample.jpg").then(response => response.blob())
    .then(blob => detect(blob, "sample.jpg"))
    .catch(error => { statusLine.textContent = String(error); });
}
</script>
</body>
</html>
"""
