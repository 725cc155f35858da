// The action channel has no view: view_loader.js finds its model by id, takes the views'
// code and the shared client (action_client.js) from it, and the client sends page actions
// on it (see ActionChannel in qnb/notebook/_widgets.py for why it is a comm of its own).
export default {
  initialize() {},
};
