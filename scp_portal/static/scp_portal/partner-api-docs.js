// Swagger UI of one integration's OpenAPI document (the partner pages, issue #14). A file of its
// own, not an inline script, so that the page's Content-Security-Policy allows scripts from the
// portal only. "Try it out" is off: the portal is not the partner's client, and its session is
// no partner token.
(function () {
  var node = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: node.getAttribute("data-openapi-url"),
    dom_id: "#swagger-ui",
    deepLinking: true,
    docExpansion: "list",
    defaultModelsExpandDepth: 2,
    supportedSubmitMethods: [],
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
})();
