/* Admission desk: the scan field takes a USB scanner's keystrokes (the token, then Enter submits the form);
   the camera button decodes the slip's QR in the browser with the BarcodeDetector where the browser has one,
   else with the vendored jsQR. Nothing is fetched from outside the app. */
(function () {
  "use strict";

  function setup() {
    var field = document.getElementById("scan-token");
    var form = document.getElementById("scan-form");
    if (!field || !form) { return; }
    field.focus();
    field.addEventListener("keydown", function (event) {
      if (event.key === "Escape") { field.value = ""; }
    });
    // Keep the scanner's keystrokes going to the field after a click elsewhere on the page.
    document.addEventListener("keydown", function (event) {
      var tag = (document.activeElement && document.activeElement.tagName) || "";
      if (tag !== "INPUT" && tag !== "SELECT" && tag !== "TEXTAREA" && tag !== "BUTTON" && event.key.length === 1) {
        field.focus();
      }
    });
    var button = document.getElementById("camera-button");
    var box = document.getElementById("camera-box");
    var status = document.getElementById("camera-status");
    if (!button || !box) { return; }
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      button.disabled = true;
      status.textContent = "此浏览器不能使用摄像头（需 HTTPS 或本机访问），请使用扫码枪。";
      return;
    }
    var stream = null;
    function stop() {
      if (stream) { stream.getTracks().forEach(function (t) { t.stop(); }); stream = null; }
      box.hidden = true;
      button.textContent = "用摄像头扫码";
    }
    function found(text) {
      stop();
      field.value = text;
      form.submit();
    }
    button.addEventListener("click", function () {
      if (stream) { stop(); return; }
      navigator.mediaDevices.getUserMedia({video: {facingMode: "environment"}}).then(function (s) {
        stream = s;
        box.hidden = false;
        button.textContent = "关闭摄像头";
        var video = box.querySelector("video");
        video.srcObject = s;
        video.play();
        var canvas = document.createElement("canvas");
        var context = canvas.getContext("2d", {willReadFrequently: true});
        var detector = ("BarcodeDetector" in window) ? new window.BarcodeDetector({formats: ["qr_code"]}) : null;
        function frame() {
          if (!stream) { return; }
          if (video.readyState < 2) { requestAnimationFrame(frame); return; }
          if (detector) {
            detector.detect(video).then(function (codes) {
              if (codes.length) { found(codes[0].rawValue); } else { requestAnimationFrame(frame); }
            }).catch(function () { detector = null; requestAnimationFrame(frame); });
            return;
          }
          canvas.width = video.videoWidth;
          canvas.height = video.videoHeight;
          context.drawImage(video, 0, 0, canvas.width, canvas.height);
          var image = context.getImageData(0, 0, canvas.width, canvas.height);
          var code = window.jsQR(image.data, image.width, image.height, {inversionAttempts: "dontInvert"});
          if (code && code.data) { found(code.data); } else { requestAnimationFrame(frame); }
        }
        requestAnimationFrame(frame);
      }).catch(function () {
        status.textContent = "无法打开摄像头，请检查浏览器权限，或使用扫码枪。";
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setup();
    document.documentElement.setAttribute("data-desk-ready", window.jsQR ? "1" : "0");
  });
})();
