// The flow-definition form: "Add a condition" adds a blank row to the builder
// (the server reads rows c0 … c9; without this script the form offers three).
const rows = document.getElementById("condition-rows");
const add = document.getElementById("add-condition");

function renumber(row, index) {
  row.dataset.row = String(index);
  row.querySelector("th").textContent = String(index + 1);
  for (const field of row.querySelectorAll("[name]")) {
    const part = field.name.replace(/^c\d+_/, "");
    field.name = `c${index}_${part}`;
    field.id = `c${index}_${part}`;
    field.value = "";
  }
  for (const label of row.querySelectorAll("label[for]")) {
    label.htmlFor = label.htmlFor.replace(/^c\d+_/, `c${index}_`);
    label.textContent = label.textContent.replace(/\d+$/, String(index + 1));
  }
}

function update() {
  add.disabled = rows.children.length >= Number(add.dataset.max);
}

add.addEventListener("click", () => {
  const row = rows.lastElementChild.cloneNode(true);
  renumber(row, rows.children.length);
  rows.append(row);
  update();
  row.querySelector("select").focus();
});
update();
